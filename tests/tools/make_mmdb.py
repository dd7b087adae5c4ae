#!/usr/bin/env python3
"""Writes a small MaxMind-format country (or ASN) database for tests.

usage: make_mmdb.py OUT.mmdb IP=CC [IP=CC ...]            e.g. 127.0.0.2=DE 127.0.0.3=US
       make_mmdb.py OUT.mmdb --asn IP=NUM:ORG [...]       e.g. 127.0.0.2=3320:Deutsche Telekom
       --type=NAME anywhere sets the database type (default GeoIP2-Country, or GeoLite2-ASN
       with --asn), e.g. --type=DBIP-Country-Lite as DB-IP names its files.
"""
import sys

from mmdb_writer import MMDBWriter
from netaddr import IPSet


def main() -> None:
    out, args = sys.argv[1], sys.argv[2:]
    asn = "--asn" in args
    types = [a.split("=", 1)[1] for a in args if a.startswith("--type=")]
    pairs = [a for a in args if not a.startswith("--")]
    kind = types[-1] if types else ("GeoLite2-ASN" if asn else "GeoIP2-Country")
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
