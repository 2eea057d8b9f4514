"""A notebook cut down to some of its code cells and the earlier cells those need, found by the names each
cell binds and uses. Used to open a notebook's explorers in the browser and to grade a blank submission
without running what a chapter computes only to print or plot."""

import ast


def python_of(cell_source):
    """A code cell as plain Python (magics such as ``%matplotlib inline`` turned into calls), or "" if it
    does not parse."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return ast.parse(TransformerManager().transform_cell(cell_source))
    except SyntaxError:
        return ast.parse("")


def bound_names(tree):
    """The names a cell's code binds in its own scope, at its top level or in any block: assignments, loop
    and ``with`` targets, imports, functions and classes (not what their bodies or comprehensions bind)."""
    names, todo = set(), [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update(alias.asname or alias.name.split(".")[0] for alias in node.names)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif not isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            todo.extend(ast.iter_child_nodes(node))
    return names


def free_names(tree):
    """The names a cell's code reads that it does not bind first itself: a statement's reads of names bound by
    an earlier statement of the cell, and a function's, lambda's or comprehension's reads of its own
    parameters and local variables, need no other cell. ``x += 1`` reads ``x``."""
    def free(node, local):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            arguments = node.args
            outside = [*arguments.defaults, *arguments.kw_defaults, *getattr(node, "decorator_list", [])]
            parameters = {argument.arg for argument in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs,
                                                        arguments.vararg, arguments.kwarg] if argument}
            body = node.body if isinstance(node.body, list) else [node.body]
            inside = local | parameters | set().union(*(bound_names(statement) for statement in body))
            return set().union(*(free(item, local) for item in outside if item),
                               *(free(statement, inside) for statement in body))
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            inside = local | set().union(*(bound_names(generator.target) for generator in node.generators))
            return set().union(*(free(child, inside) for child in ast.iter_child_nodes(node)))
        if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):  # x += 1 reads x first
            return free(node.value, local) | ({node.target.id} - local)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            return set() if node.id in local else {node.id}
        return set().union(*(free(child, local) for child in ast.iter_child_nodes(node)))

    names, bound = set(), set()
    for statement in tree.body:
        names |= free(statement, bound)
        bound |= bound_names(statement)
    return names


def needed_cells(sources, wanted):
    """Indices, in order, of the code cells (``sources``) to run for the cells ``wanted``: the first cell
    (the set-up: ``%matplotlib inline``, imports), the wanted ones, and every earlier cell that binds a name a
    kept cell uses."""
    trees = [python_of(source) for source in sources]
    needed, kept = set(), []
    for index in reversed(range(len(sources))):
        bound = bound_names(trees[index])
        if index == 0 or index in wanted or bound & needed:
            kept.append(index)
            needed = (needed - bound) | free_names(trees[index])
    return kept[::-1]
