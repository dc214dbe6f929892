#!/usr/bin/env bash
# Check that a ferrocorn wheel's platform tag holds for everything in it:
# maturin's auditwheel check covers the native module; the master binary
# (ferrocorn-*.data/scripts/ferrocorn) must need no newer glibc symbol
# than the tag's manylinux_2_NN either, or pip would install a wheel whose
# `ferrocorn` command cannot start.
#
#   scripts/wheel-check.sh target/wheels/ferrocorn-VERSION-cp39-abi3-manylinux_2_NN_x86_64.whl
set -euo pipefail
wheel=${1:?usage: $0 WHEEL}
tag=$(basename "$wheel" .whl | sed -n 's/.*-manylinux_2_\([0-9]*\)_x86_64$/\1/p')
[[ -n $tag ]] || { echo "wheel-check: $wheel has no manylinux_2_NN_x86_64 tag" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 -m zipfile -e "$wheel" "$dir"
status=0
for elf in "$dir"/ferrocorn-*.data/scripts/ferrocorn "$dir"/ferrocorn/_native*.so; do
    [[ -f $elf ]] || { echo "wheel-check: missing $(basename "$elf") in $wheel" >&2; status=1; continue; }
    need=$(objdump -T "$elf" | grep -o 'GLIBC_2\.[0-9]*' | sed 's/GLIBC_2\.//' | sort -n | tail -n 1)
    if ((need > tag)); then
        echo "wheel-check: ${elf#"$dir"/} needs glibc 2.$need, above the tag's 2.$tag" >&2
        status=1
    else
        echo "wheel-check: ${elf#"$dir"/} needs glibc 2.$need (tag manylinux_2_$tag)"
    fi
done
if readelf -d "$dir"/ferrocorn-*.data/scripts/ferrocorn | grep -q 'libpython'; then
    echo "wheel-check: the master links libpython" >&2
    status=1
fi
exit $status
