#!/usr/bin/env python3
"""The shared libraries a program loads, as ldd lists them (its DT_NEEDED
entries and theirs), checked against what it must and must not load.

Usage: check-needed.py PROGRAM [--forbid PREFIX]... [--expect PREFIX]...

Fails when a library whose name starts with a --forbid prefix is loaded,
when one named by --expect is not, or when ldd lists no libc (then it
read nothing, and the rest would prove nothing).
"""
import argparse
import os
import subprocess
import sys


def needed(program):
    out = subprocess.run(['ldd', program], check=True, capture_output=True, text=True).stdout
    names = []
    for line in out.splitlines():
        field = line.strip().split(' ', 1)[0]
        if field:
            names.append(os.path.basename(field))
    return names


def main():
    p = argparse.ArgumentParser()
    p.add_argument('program')
    p.add_argument('--forbid', action='append', default=[])
    p.add_argument('--expect', action='append', default=[])
    a = p.parse_args()
    names = needed(a.program)
    print(f'{a.program}: ' + ' '.join(names))
    failed = False
    if not any(n.startswith('libc.so') for n in names):
        print('ldd lists no libc: cannot tell what the program loads')
        failed = True
    for prefix in a.forbid:
        for n in names:
            if n.startswith(prefix):
                print(f'loads {n}, which it must not ({prefix}*)')
                failed = True
    for prefix in a.expect:
        if not any(n.startswith(prefix) for n in names):
            print(f'loads no {prefix}*, which it must')
            failed = True
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
