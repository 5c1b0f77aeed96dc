"""docs/ARCHITECTURE.md's source map names every file of src/, under its
folder, and nothing that is not there (a comment is code: a new module
comes with its line)."""
import os
import re

from conftest import ROOT


def source_map():
    """{folder: set of file names} from the "Source map" section."""
    with open(os.path.join(ROOT, "docs", "ARCHITECTURE.md")) as f:
        text = f.read()
    section = text.split("## Source map", 1)[1].split("\n## ", 1)[0]
    files, folder = {}, None
    for line in section.splitlines():
        m = re.match(r"\| \*\*src/(\w+)/\*\* \|", line)
        if m:
            folder = m.group(1)
            files.setdefault(folder, set())
            continue
        if line.startswith("| **"):
            folder = None  # include/dripd/ and the like
            continue
        if folder and line.startswith("| `"):
            first_cell = line.split("|")[1]
            files[folder].update(re.findall(r"`([\w.]+\.[ch])`", first_cell))
    return files


def test_every_source_file_is_in_the_map():
    mapped = source_map()
    src = os.path.join(ROOT, "src")
    tree = {d: {f for f in os.listdir(os.path.join(src, d)) if f.endswith((".c", ".h"))}
            for d in os.listdir(src) if os.path.isdir(os.path.join(src, d))}
    missing = {d: sorted(fs - mapped.get(d, set())) for d, fs in tree.items()}
    missing = {d: fs for d, fs in missing.items() if fs}
    extra = {d: sorted(fs - tree.get(d, set())) for d, fs in mapped.items()}
    extra = {d: fs for d, fs in extra.items() if fs}
    assert not missing, "files missing from docs/ARCHITECTURE.md's source map: %r" % missing
    assert not extra, "docs/ARCHITECTURE.md's source map names files that are gone: %r" % extra
