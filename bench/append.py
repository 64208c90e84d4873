#!/usr/bin/env python3
"""append.py SESSION PREFIX TAIL MIB: split the transcript SESSION at the
line boundary that leaves about MIB MiB after it; write the part before to
PREFIX and the rest to TAIL. Prints the two sizes in bytes."""

import sys


def main():
    session, prefix, tail, mib = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    data = open(session, "rb").read()
    cut = data.rfind(b"\n", 0, len(data) - int(mib * 1048576)) + 1
    open(prefix, "wb").write(data[:cut])
    open(tail, "wb").write(data[cut:])
    print(cut, len(data) - cut)


if __name__ == "__main__":
    main()
