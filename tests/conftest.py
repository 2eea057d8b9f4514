"""Test order for a parallel run (``pytest -n 2``): the slow tests (notebook runs, training on MNIST,
browsers, several processes) start first and the quick ones come last, so that both workers stay busy to
the end instead of one finishing a long test alone."""


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: file order otherwise
