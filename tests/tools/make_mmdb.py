#!/usr/bin/env python3
"""Writes a small MaxMind-format country database for tests.

usage: make_mmdb.py OUT.mmdb IP=CC [IP=CC ...]   e.g. 127.0.0.2=DE 127.0.0.3=US
"""
import sys

from mmdb_writer import MMDBWriter
from netaddr import IPSet


def main() -> None:
    out, pairs = sys.argv[1], sys.argv[2:]
    w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-Country")
    for pair in pairs:
        ip, cc = pair.split("=")
        w.insert_network(IPSet([ip + "/32"]), {"country": {"iso_code": cc}})
    w.to_db_file(out)


if __name__ == "__main__":
    main()
