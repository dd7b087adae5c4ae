#!/usr/bin/env python3
"""Writes a small MaxMind-format country (or ASN) database for tests.

usage: make_mmdb.py OUT.mmdb IP=CC [IP=CC ...]            e.g. 127.0.0.2=DE 127.0.0.3=US
       make_mmdb.py OUT.mmdb --asn IP=NUM:ORG [...]       e.g. 127.0.0.2=3320:Deutsche Telekom
"""
import sys

from mmdb_writer import MMDBWriter
from netaddr import IPSet


def main() -> None:
    out, pairs = sys.argv[1], sys.argv[2:]
    asn = bool(pairs) and pairs[0] == "--asn"
    if asn:
        pairs = pairs[1:]
    kind = "GeoLite2-ASN" if asn else "GeoIP2-Country"
    w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type=kind)
    for pair in pairs:
        ip, value = pair.split("=", 1)
        if asn:
            num, org = value.split(":", 1)
            record = {"autonomous_system_number": int(num), "autonomous_system_organization": org}
        else:
            record = {"country": {"iso_code": value}}
        w.insert_network(IPSet([ip + "/32"]), record)
    w.to_db_file(out)


if __name__ == "__main__":
    main()
