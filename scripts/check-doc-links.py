#!/usr/bin/env python3
"""Checks that every relative link in README.md and docs/*.md resolves: the file (or directory)
exists in the repository and, for `file.md#anchor`, the anchor is a heading of that file
(GitHub's slug rules). Exits 1 with one `file:line: link: why` per broken link.

    python3 scripts/check-doc-links.py [FILE.md ...]
"""
import os
import re
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading):
    text = re.sub(r"`|\*|_(?=\w)|(?<=\w)_", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path):
    found, seen, fenced = set(), {}, False
    for line in open(path, encoding="utf-8"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if fenced:
            continue
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            s = slug(m.group(1))
            n = seen.get(s, 0)
            seen[s] = n + 1
            found.add(s if n == 0 else f"{s}-{n}")
    return found


def check(md):
    errors, fenced = [], False
    for number, line in enumerate(open(md, encoding="utf-8"), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if fenced:
            continue
        for m in LINK.finditer(line):
            target = m.group(1) or m.group(2)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            full = os.path.normpath(os.path.join(os.path.dirname(md), path)) if path else md
            where = f"{os.path.relpath(md, ROOT)}:{number}: {target}"
            if not full.startswith(ROOT + os.sep) and full != ROOT:
                errors.append(f"{where}: points outside the repository")
            elif not os.path.exists(full):
                errors.append(f"{where}: no such file")
            elif anchor and full.endswith(".md") and anchor not in anchors(full):
                errors.append(f"{where}: no heading with anchor #{anchor}")
    return errors


def main(argv):
    files = argv or [os.path.join(ROOT, "README.md")] + sorted(
        os.path.join(ROOT, "docs", f) for f in os.listdir(os.path.join(ROOT, "docs")) if f.endswith(".md"))
    errors = [e for f in files for e in check(os.path.abspath(f))]
    for e in errors:
        print(e)
    print(f"{len(files)} files, {len(errors)} broken links", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
