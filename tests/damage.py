"""Hypothesis strategies that damage JSON documents (model files, manifests): a random
JSON value, and every place in a document where one can go."""

from hypothesis import strategies as st

#: Any JSON value, small: what a damaged field may hold instead.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5),
                                                                      children, max_size=3),
    max_leaves=6)


def json_paths(doc, prefix=(), items=3):
    """Every path (tuple of keys and indices) in ``doc``, the root ``()`` first; lists
    contribute their first ``items`` items."""
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from json_paths(v, prefix + (k,), items)
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:items]):
            yield from json_paths(v, prefix + (i,), items)


def replace_at(doc, path, value, remove: bool = False) -> None:
    """Put ``value`` at ``path`` in ``doc`` (or remove the key there, when ``remove`` and
    it is a key of an object)."""
    target = doc
    for key in path[:-1]:
        target = target[key]
    if remove and isinstance(target, dict):
        target.pop(path[-1])
    else:
        target[path[-1]] = value
