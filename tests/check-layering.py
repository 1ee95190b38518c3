#!/usr/bin/env python3
"""The layering of src/, checked over its #include "..." lines.

Three rules, each failure named file:line:

1. A private header (a file named internal.h or *-internal.h) is included
   only from its own directory.
2. A module includes only its own headers and those of the modules it may
   use: USES below, the same graph the libraries' dependencies encode in
   the meson.build files (src/meson.build explains them), plus a few
   single headers a module reads for their types only (HEADERS).
3. The headers of an external library that one module wraps are included
   by that module only (EXTERNAL): only the store includes raft.h, only
   trust tss2's and OpenSSL's (and the api module, for the peer API's TLS), only the datapath nftables' (STYLE.md);
   nor does any other module include a header of src/ that includes them.

A file's module is its directory (src/services/<name>/ is <name>), except
for the files in MODULE_OF_FILE, which the build puts in libraries of
their own. A directory that is in neither table is an error: a new module
adds its line to USES, next to its library in its meson.build; a new
service, its folder src/services/<name>/, is the module <name>.

Usage: check-layering.py SRC_DIR
"""
import os
import re
import sys

# module -> the modules it may use; mirrors each library's declared uses.
USES = {
    'lib': [],
    'api': ['lib'],
    'openflow': ['lib'],
    'store': ['api', 'datapath', 'lib'],
    'datapath': ['lib'],
    'guest': ['lib'],
    'switch-tables': ['store', 'lib'],
    'trust-tables': ['store', 'lib'],
    'devices-tables': ['store', 'lib'],
    'switch': ['switch-tables', 'trust-tables', 'store', 'openflow', 'api', 'lib'],
    'trust-measure': ['lib'],
    'trust': ['trust-measure', 'trust-tables', 'switch-tables', 'store', 'api', 'lib'],
    'service': ['api', 'lib'],
    'nat': ['service', 'switch', 'switch-tables', 'trust-tables', 'store', 'datapath',
            'guest', 'openflow', 'api', 'lib'],
    'devices': ['devices-tables', 'service', 'switch', 'switch-tables', 'trust-tables',
                'store', 'datapath', 'openflow', 'api', 'lib'],
    'labels': ['service', 'store', 'api', 'lib'],
    'policy': ['service', 'switch-tables', 'devices-tables', 'store', 'datapath', 'guest',
               'api', 'lib'],
    'control': ['service', 'store', 'datapath', 'api', 'lib'],
    'config': ['lib'],
    # The daemon starts and wires every module.
    'ettmd': ['*'],
    'ettmctl': ['config', 'trust-measure', 'api', 'lib'],
}

# module -> single headers it may include beyond USES, for their types and
# constants only: the library links none of their code.
HEADERS = {
    # The configuration fills each module's options.
    'config': ['datapath/datapath.h', 'services/nat/nat.h', 'store/store.h',
               'switch/switch.h', 'trust/attest.h'],
    # Row sizes, and the declaration of trust_measurement().
    'ettmctl': ['store/tables.h', 'trust/trust.h'],
    # The modules that are services of the agent define their struct
    # service (services/service.h: types only) and read the host's
    # addresses from its struct dp_config.
    'store': ['services/service.h'],
    'switch': ['services/service.h', 'datapath/datapath.h'],
    'trust': ['services/service.h'],
    # The switches' addresses, from the switch controller's options.
    'control': ['switch/switch.h'],
}

# Files that the build puts in a library other than their directory's.
MODULE_OF_FILE = {
    'switch/tables.c': 'switch-tables',
    'switch/tables.h': 'switch-tables',
    'trust/tables.c': 'trust-tables',
    'trust/tables.h': 'trust-tables',
    'services/devices/tables.c': 'devices-tables',
    'services/devices/tables.h': 'devices-tables',
    'trust/measure.c': 'trust-measure',
    'ettmd/config.c': 'config',
    'ettmd/config.h': 'config',
    # The option defaults, built into ettm-config (src/ettmd/meson.build).
    'store/options.c': 'config',
    'switch/options.c': 'config',
    'services/nat/options.c': 'config',
    'trust/options.c': 'config',
}

# <header> prefix -> the modules that may include it.
EXTERNAL = {
    'raft': ['store'],
    'tss2/': ['trust'],
    'openssl/': ['trust', 'trust-measure', 'api'],
    'nftables/': ['datapath'],
    'libmnl/': ['datapath', 'guest'],
    'libnetfilter_queue/': ['datapath'],
}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
SYSTEM_INCLUDE = re.compile(r'^\s*#\s*include\s+<([^>]+)>')


def is_private(path):
    name = os.path.basename(path)
    return name == 'internal.h' or name.endswith('-internal.h')


def module_of(rel):
    if rel in MODULE_OF_FILE:
        return MODULE_OF_FILE[rel]
    parts = rel.split('/')
    if parts[0] == 'services':
        return parts[1] if len(parts) > 2 else 'service'
    return parts[0]


def resolve(src, rel_dir, name):
    """The header's path relative to src/, as the compiler finds it: beside
    the including file first, then from src/ (the one include directory)."""
    for base in (rel_dir, ''):
        cand = os.path.normpath(os.path.join(base, name))
        if os.path.isfile(os.path.join(src, cand)):
            return cand
    return None


def check_external(mod, where, header, errors, own=True):
    for prefix, owners in EXTERNAL.items():
        if header.startswith(prefix) and mod not in owners:
            what = f'module {mod} includes <{header}>,' if own else f'module {mod} may not see it:'
            errors.append(f'{where} {what} only {", ".join(owners)} may include <{header}>')


def externals_of(src, header, cache={}):
    """The external headers of EXTERNAL that @header includes itself."""
    if header not in cache:
        with open(os.path.join(src, header), encoding='utf-8') as f:
            cache[header] = [m.group(1) for m in map(SYSTEM_INCLUDE.match, f) if m and
                             any(m.group(1).startswith(p) for p in EXTERNAL)]
    return cache[header]


def check_file(src, rel, errors):
    mod = module_of(rel)
    rel_dir = os.path.dirname(rel)
    with open(os.path.join(src, rel), encoding='utf-8') as f:
        for lineno, line in enumerate(f, 1):
            m = SYSTEM_INCLUDE.match(line)
            if m:
                check_external(mod, f'src/{rel}:{lineno}:', m.group(1), errors)
                continue
            m = INCLUDE.match(line)
            if not m:
                continue
            where = f'src/{rel}:{lineno}'
            target = resolve(src, rel_dir, m.group(1))
            if target is None:
                errors.append(f'{where}: "{m.group(1)}" is not a file of src/')
                continue
            same_dir = os.path.dirname(target) == rel_dir
            if is_private(target) and not same_dir:
                errors.append(f'{where}: includes {target}, private to src/{os.path.dirname(target)}/')
                continue
            if same_dir:
                continue
            for ext in externals_of(src, target):
                check_external(mod, f'{where}: {target} includes <{ext}>;', ext, errors,
                               own=False)
            tmod = module_of(target)
            if (tmod == mod or tmod in USES[mod] or '*' in USES[mod] or
                    target in HEADERS.get(mod, [])):
                continue
            errors.append(f'{where}: module {mod} includes {target} of module {tmod}, '
                          f'which it may not use (it may use: {", ".join(USES[mod]) or "nothing"})')


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    src = sys.argv[1]
    errors = []
    files = []
    for root, _, names in os.walk(src):
        for name in names:
            if name.endswith(('.c', '.h')):
                files.append(os.path.relpath(os.path.join(root, name), src))
    for rel in sorted(files):
        mod = module_of(rel)
        if mod not in USES:
            errors.append(f'src/{rel}: module {mod} is not in the table of tests/check-layering.py')
            continue
        check_file(src, rel, errors)
    for e in errors:
        print(e)
    if errors:
        print(f'{len(errors)} layering violation(s) in {len(files)} files')
        return 1
    print(f'layering: {len(files)} files, {len(USES)} modules, no violation')
    return 0


if __name__ == '__main__':
    sys.exit(main())
