"""Tables the chapters print: numbers in aligned columns under a header, each column with its own format.

``table(header, rows, formats)`` returns the text; a notebook prints it. Columns are right-aligned (numbers
line up on their last digit), the first column left-aligned when it holds names. A chapter's cell then says
what it measured, not how to pad it.
"""


def cell(value, spec):
    """``value`` formatted with ``spec`` (a format spec such as ".1%" or ",", or a function), "" for None."""
    if value is None:
        return ""
    return spec(value) if callable(spec) else format(value, spec)


def table(header, rows, formats=None):
    """``rows`` (sequences of values, one per column of ``header``) as aligned text; ``formats`` gives one
    format spec or function per column ("" keeps str()); a column of strings first is left-aligned."""
    rows = [list(row) for row in rows]
    formats = list(formats or [""] * len(header))
    if any(len(row) != len(header) for row in rows) or len(formats) != len(header):
        raise ValueError(f"every row and the formats need one entry per column of the header {list(header)}")
    text = [[str(name) for name in header]] + [[cell(value, spec) for value, spec in zip(row, formats)]
                                               for row in rows]
    widths = [max(len(line[column]) for line in text) for column in range(len(header))]
    names_first = bool(rows) and all(isinstance(row[0], str) for row in rows)
    aligned = [[entry.ljust(width) if column == 0 and names_first else entry.rjust(width)
                for column, (entry, width) in enumerate(zip(line, widths))] for line in text]
    return "\n".join("  ".join(line).rstrip() for line in aligned)
