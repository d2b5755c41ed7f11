#!/usr/bin/env python3
"""Unpacks the Elixir web servers' source archives (test fixtures, see
../shared/elixir-deps/README.md) into DEST and makes them build offline with
Debian 12's Elixir 1.14, changing only what that takes:

- each package's Hex dependencies become path dependencies on its unpacked
  siblings; dependencies for docs, dev or test only are dropped;
- cowboy_telemetry's rebar.config loses its deps and plugins (Mix gives it
  cowboy and telemetry);
- Bandit's `size(^name)` in binary patterns, which Elixir 1.14 rejects,
  becomes `size(name)`, which means the same there.

Usage: elixir_deps.py ARCHIVES DEST
"""
import pathlib
import re
import shutil
import sys
import tarfile


def path_deps(mix_exs: pathlib.Path) -> None:
    lines = []
    for line in mix_exs.read_text().splitlines(keepends=True):
        # A list of one dependency on its line, such as [{:ex_doc, ...}].
        alone = re.match(r"(\s*)\[\{:\w+,.*\}\]\s*$", line)
        if alone and "only:" in line:
            lines.append(alone.group(1) + "[]\n")
            continue
        dep = re.match(r"(\s*)\{:(\w+),\s*(.*)\},?\s*$", line)
        if dep and "only:" in line:
            continue
        if dep:
            indent, name, rest = dep.groups()
            optional = ", optional: true" if "optional: true" in rest else ""
            line = f'{indent}{{:{name}, path: "../{name}", override: true{optional}}},\n'
        lines.append(line)
    mix_exs.write_text("".join(lines))


def main(archives: str, dest: str) -> None:
    dest_dir = pathlib.Path(dest)
    shutil.rmtree(dest_dir, ignore_errors=True)
    dest_dir.mkdir(parents=True)
    for archive in sorted(pathlib.Path(archives).glob("*.tar.gz")):
        with tarfile.open(archive) as tar:
            tar.extractall(dest_dir)
    for mix_exs in dest_dir.glob("*/mix.exs"):
        path_deps(mix_exs)
    rebar = dest_dir / "cowboy_telemetry" / "rebar.config"
    rebar.write_text("{erl_opts, [debug_info]}.\n{deps, []}.\n")
    for source in (dest_dir / "bandit" / "lib").rglob("*.ex"):
        text = source.read_text()
        source.write_text(re.sub(r"size\(\^(\w+)\)", r"size(\1)", text))


if __name__ == "__main__":
    main(*sys.argv[1:])
