#!/usr/bin/env python3
"""Writes the committed seed inputs under fuzz/seeds/<target>/ (run from anywhere).

Frame seeds are the golden valid and invalid frames of tests/vectors/frames.json; the
certificates are a traffix self-signed ECDSA P-256 certificate (tls::generate_self_signed) and
an RSA-2048 one from openssl. Username and egress seeds are a sample of tests/vectors/{username,egress}.json.
"""
import gzip
import io
import json
import struct
import tarfile
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
ROOT = FUZZ.parent
SEEDS = FUZZ / "seeds"

ECDSA_CERT = (
    "308201493081f0a00302010202147fa33c96361523caa4f3d7465c09f7c6d6e0d2f5300a06082a8648ce3d0403023014"
    "3112301006035504030c096c6f63616c686f73743020170d3234303130313030303030305a180f323039393132333130"
    "30303030305a30143112301006035504030c096c6f63616c686f73743059301306072a8648ce3d020106082a8648ce3d"
    "0301070342000402d6c1a7453a37fba810eabdbe2e4a06377df974b010e9cec15eb3f7ddf4f81b426bbe672c20245659"
    "99c819ce931b1af3b088b61871827c819226d648fd40aaa31e301c301a0603551d110413301182096c6f63616c686f73"
    "7487047f000001300a06082a8648ce3d0403020348003045022100a16965ce3f67a82881737ac137b2477f71234d3877"
    "0efb7b3bc01ac0f3575021022037dedf1583680331a04f2472ab996ed4ecc0e0241f068fddbbbc18c051e7378a"
)

RSA_CERT = (
    "30820315308201fda00302010202147e79dd59e71473ddc1a0362ad1a1815c1d9ccf0b300d06092a864886f70d01010b"
    "0500301a3118301606035504030c0f747261666669782e6578616d706c65301e170d3236313132353231323033325a17"
    "0d3336313132323231323033325a301a3118301606035504030c0f747261666669782e6578616d706c6530820122300d"
    "06092a864886f70d01010105000382010f003082010a0282010100daf01ac3cca1c3b597a897a3860531b712d1f00040"
    "6a7a6e1a6dcaa9121a034406508efaede46575d852e6ac9f0feca3520abe91f17ffe445ea6e49e9e7a98065467689192"
    "c4aa29c7008ad57097453bf0a7299060828427301f1feb861a5247877f6b30242f2c006e6d2f40d779949fef4a32dedf"
    "5cb7820ed4ca3bad449f9f0366d0dac896ec86dd13130e414e5e1e0c1ed9a81eab2fb5646dbcf5267718ea772a234b78"
    "53c3ac246ec070e7b9fc9c1e3452f1c9e5df4e3fed3638ce57f6efe03606297d049e651ac4aae8e764a2ac0845a8ebae"
    "4861473f87d85049f775c7b09fe7586345b8fb24162eaa613c0da27fb013eca7a795f2515125fe751bfa3b0203010001"
    "a3533051301d0603551d0e04160414bdbbf516c342758046bb0d42681bba49aa5614ed301f0603551d23041830168014"
    "bdbbf516c342758046bb0d42681bba49aa5614ed300f0603551d130101ff040530030101ff300d06092a864886f70d01"
    "010b050003820101001fcd8d166eff3a89e1db28804b2be95ceea337a852ac1a9843d24c1e66f6f595a725f2eafbcf6d"
    "2f54cd55c2674ba13757d7cb21d0a9eacb5c4d3f8903bd328e89c340d8e9f17901ca666c311a8f0ca41027d975d3e66b"
    "3546162d2eefc210ce03d98fabc9c740da971df59663d007f696f1b5fb11bc7023c99f548ff67578be162ed38b53309d"
    "76ae4989ea9948f0ebd8e94dab162600abebdae7e2cfcf512fd255a40d080dd1afd5a972716b9bc8444b448fc0e54eda"
    "d3486863627a500f1fd458f49588aeefaebaabd9ba638606e4db20f9792f081529c8c178821c3187ba0c7dbc3e118bad"
    "c682b8d16ee8af8b5af5c7205a2c73086c667560abe90aef94"
)

HTTP_HEADS = {
    "connect": b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
    b"Proxy-Authorization: Basic YWxpY2UtY291bnRyeS1kZTpzZWNyZXQ=\r\n\r\n",
    "connect_v6": b"CONNECT [2001:db8::1]:8443 HTTP/1.1\r\nHost: [2001:db8::1]:8443\r\n\r\n",
    "get_absolute": b"GET http://user@example.com:8080/path?q=1#frag HTTP/1.1\r\nHost: example.com\r\n"
    b"Proxy-Connection: keep-alive\r\n\r\n",
    "get_http10": b"GET http://93.184.216.34/ HTTP/1.0\r\nConnection: close\r\n\r\n",
    "get_https": b"GET https://example.com/ HTTP/1.1\r\n\r\n",
    "partial": b"CONNECT example.com:443 HTTP/1.1\r\nHost: exa",
    "authority": b"example.com:443",
    "basic": b"Basic YWxpY2U6cGFzc3dvcmQ=",
}

PAIRING_LINKS = [
    "traffix://pair?server=proxy.example.com:8443&pin=" + "ab" * 32 + "&code=ABCD-EFGH",
    "traffix://pair?server=[2001:db8::1]:8443&pin=" + "0f" * 32 + "&code=1234",
    "  traffix://pair?code=x%20y&pin=" + "00" * 32 + "&server=10.0.0.1:1\n",
    "traffix://pair?server=host&pin=zz&code=",
    "https://pair?server=a:1",
]

CONFIGS = {
    "minimal": "[server]\npublic_address = 'a:1'\n",
    "env_style": "[server]\npublic_address = \"proxy.example.com:8443\"\n[billing]\nprice_per_gb = \"2.50\"\n"
    "platform_fee_percent = 101\n[egress]\nblocked_ports = [25, \"135-139\", \"9-3\"]\n",
    "bad_float_money": "[server]\npublic_address='a:1'\n[billing]\nprice_per_gb=3.0\n",
}

MONEY = ["0", "12", "12.5", "0.000001", "3.00", "18446744073709.551615", "18446744073709.551616",
         " 1.25 ", "1.", ".5", "1.0000001", "007.10"]


GENERIC_BODY = b'{"id":"ord-1","user":"alice","amount":"12.50","currency":"USD"}'
CRYPTOPAY_INVOICE = (
    b'{"invoice_id":1000,"hash":"IV1000abc","currency_type":"fiat","fiat":"USD","amount":"5.00",'
    b'"status":"paid","bot_invoice_url":"https://t.me/CryptoBot?start=IV1000abc","paid_asset":"USDT"}'
)
CRYPTOPAY_UPDATE = (
    b'{"update_id":1,"update_type":"invoice_paid","request_date":"2026-01-01T00:05:01.000Z","payload":'
    + CRYPTOPAY_INVOICE + b"}"
)
PAYMENT_WEBHOOKS = {
    "generic_signed": (None, GENERIC_BODY),
    "generic_two_signatures": (b"t=1700000000,v1=" + b"0" * 64 + b",v1=" + b"f" * 64, GENERIC_BODY),
    "generic_number_amount": (b"t=1", b'{"id":"a","user":"alice","amount":12.5,"currency":"USD"}'),
    "cryptopay_update": (b"0" * 64, CRYPTOPAY_UPDATE),
    "cryptopay_answer": (b"", b'{"ok":true,"result":{"items":[' + CRYPTOPAY_INVOICE + b"]}}"),
    "cryptopay_error": (b"", b'{"ok":false,"error":{"code":401,"name":"UNAUTHORIZED"}}'),
}

TELEGRAM = {
    "start": b'{"update_id":1,"message":{"message_id":1,"date":1,"text":"/start abc","chat":{"id":42,"type":"private",'
    b'"first_name":"U"},"from":{"id":42,"is_bot":false,"first_name":"U"}}}',
    "callback": b'{"update_id":2,"callback_query":{"id":"c","chat_instance":"i","data":"dev:pause:a1b2c3d4",'
    b'"from":{"id":42,"is_bot":false,"first_name":"U"}}}',
    "pre_checkout": b'{"update_id":3,"pre_checkout_query":{"id":"p","currency":"XTR","total_amount":250,'
    b'"invoice_payload":"topup:tg_42:5000000:250","from":{"id":42,"is_bot":false,"first_name":"U"}}}',
    "no_id": b'{"message":"not an object"}',
    "command": b"/withdraw@traffix_bot 5.00 IBAN DE00 1",
    "button": b"wd:approve:7",
    "payload": b"topup:tg_42:5000000:250",
}


# reputation_answer: 1 byte N, N bytes of JSON pointer, the service's answer.
REPUTATION = {
    "risk_number": b"\x05/risk" + b'{"risk": 73.5, "ip": "203.0.113.7"}',
    "nested_bool": b"\x0d/security/vpn" + b'{"security": {"vpn": true, "proxy": false}}',
    "array_index": b"\x09/scores/0" + b'{"scores": [12, 90]}',
    "escaped_pointer": b"\x07/a~1b~0" + b'{"a/b~": 150}',
    "out_of_range": b"\x05/risk" + b'{"risk": 1e400}',
    "not_json": b"\x05/risk" + b"<html>rate limited</html>",
}


# ws_frame: byte 0 = side (even: server reading masked frames) and read size; then the bytes.
def ws(b0, payload, key=None):
    n = len(payload)
    mask = 0x80 if key else 0
    if n < 126:
        h = bytes([b0, mask | n])
    elif n < 65536:
        h = bytes([b0, mask | 126]) + n.to_bytes(2, "big")
    else:
        h = bytes([b0, mask | 127]) + n.to_bytes(8, "big")
    if key:
        h += key
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return h + payload


KEY = bytes([0x37, 0xFA, 0x21, 0x3D])
WS = {
    "masked_binary": b"\x00" + ws(0x82, b"\x01\x00\x00\x00\x03\x00hello", KEY),
    "masked_16bit_len": b"\x08" + ws(0x82, bytes(300), KEY),
    "fragments_and_ping": b"\x02" + ws(0x02, b"ab", KEY) + ws(0x89, b"p", KEY) + ws(0x80, b"cd", KEY),
    "close_with_code": b"\x00" + ws(0x88, b"\x03\xe8bye", KEY),
    "server_frames": b"\x01" + ws(0x82, b"x" * 70) + ws(0x8A, b"") + ws(0x81, b"text"),
    "server_64bit_len": b"\x05" + ws(0x82, bytes(65536)),
    "unmasked_from_client": b"\x00" + ws(0x82, b"x"),
    "reserved_bits": b"\x01" + ws(0xC2, b"x"),
    "huge_length": b"\x01" + bytes([0x82, 0x7F, 0x40, 0, 0, 0, 0, 0, 0, 0]),
    "stray_continuation": b"\x01" + ws(0x80, b"x"),
}


# tls_records: byte 0 = side (even: server) and read size; then records the fuzz target seals:
# outer type, content type, padding, 2-byte body length, body.
def rec(body, ct=23, pad=0, outer=23):
    return bytes([outer, ct, pad]) + len(body).to_bytes(2, "big") + body


CLOSE = rec(b"\x01\x00", ct=21)
TLS_RECORDS = {
    "data_then_close": b"\x00" + rec(b"hello") + rec(b"", pad=40) + CLOSE,
    "key_update_requested": b"\x03" + rec(b"\x18\x00\x00\x01\x01", ct=22) + rec(b"after") + CLOSE,
    "key_update_split": b"\x00" + rec(b"\x18\x00", ct=22) + rec(b"\x00\x01\x00", ct=22) + rec(b"x"),
    "session_ticket": b"\x01" + rec(b"\x04\x00\x00\x02ab", ct=22) + rec(b"x") + CLOSE,
    "fatal_alert": b"\x02" + rec(b"\x02\x28", ct=21),
    "handshake_outer_type": b"\x00" + rec(b"x", outer=0),
    "full_record": b"\x10" + rec(bytes(16384)) + rec(bytes(300)) + CLOSE,
}


# ws_records: byte 0 = side (even: server, reading masked frames) and read size; then records as
# for tls_records, except the content type byte: below 0x80 application data, else its low 7 bits.
# The bodies are WebSocket bytes, frames split across records anywhere.
def wsrec(body, ct=None, pad=0, outer=23):
    return bytes([outer, 23 if ct is None else 0x80 | ct, pad]) + len(body).to_bytes(2, "big") + body


def split(stream, sizes):
    out, at, k = b"", 0, 0
    while at < len(stream):
        n = sizes[k % len(sizes)]
        out += wsrec(stream[at:at + n])
        at, k = at + n, k + 1
    return out


WS_CLOSE = wsrec(b"\x01\x00", ct=21)
WS_NODE = ws(0x82, bytes(range(256)) * 2) + ws(0x89, b"p") + ws(0x82, b"\x01\x00\x00\x00\x03\x00hello")
WS_MASKED = ws(0x82, b"\x04\x00\x00\x00\x01", KEY) + ws(0x02, b"ab", KEY) + ws(0x80, b"cd", KEY)
WS_RECORDS = {
    "frames_across_records": b"\x01" + split(WS_NODE, [1, 100, 7, 300]) + WS_CLOSE,
    "masked_frames_to_server": b"\x02" + split(WS_MASKED, [3, 5]) + WS_CLOSE,
    "key_update_inside_a_frame": b"\x03" + wsrec(WS_NODE[:200]) + wsrec(b"\x18\x00\x00\x01\x01", ct=22)
    + wsrec(WS_NODE[200:]) + WS_CLOSE,
    "padded_and_empty_records": b"\x05" + wsrec(WS_NODE[:50], pad=200) + wsrec(b"") + wsrec(b"", pad=9)
    + wsrec(b"\x01\x5a", ct=21) + wsrec(WS_NODE[50:]) + WS_CLOSE,
    "close_frame_then_more": b"\x01" + wsrec(ws(0x88, b"\x03\xe8bye") + ws(0x82, b"late")) + WS_CLOSE,
    "oversized_frame_then_bad_record": b"\x07" + wsrec(ws(0x82, b"ok") + bytes([0x82, 0x7F, 0, 0, 0, 0, 0, 0x10, 0, 0]))
    + wsrec(b"x", outer=0),
    "frame_cut_by_a_bad_alert": b"\x09" + wsrec(WS_NODE[:30]) + wsrec(b"\x02\x28", ct=21),
    "truncated_record": b"\x01" + wsrec(WS_NODE[:100]) + wsrec(WS_NODE[100:])[:40],
    "unmasked_to_server": b"\x00" + wsrec(ws(0x82, b"x")) + WS_CLOSE,
    "full_records_of_a_large_frame": b"\x20" + split(ws(0x82, bytes(40000)), [16384]) + WS_CLOSE,
}


def write(target, name, data):
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def main():
    frames = json.loads((ROOT / "tests/vectors/frames.json").read_text())
    for i, c in enumerate(frames["frames"]):
        write("frame_decode", f"frame_{i:02}", bytes.fromhex(c["hex"]))
    for i, c in enumerate(frames["invalid"]):
        if c.get("hex"):  # the two 64 KiB "too_large" cases are given as prefix + repeat: skipped
            write("frame_decode", f"invalid_{i:02}", bytes.fromhex(c["hex"]))

    for name, data in REPUTATION.items():
        write("reputation_answer", name, data)

    for name, data in WS.items():
        write("ws_frame", name, data)

    for name, data in TLS_RECORDS.items():
        write("tls_records", name, data)

    for name, data in WS_RECORDS.items():
        write("ws_records", name, data)

    for name, data in TELEGRAM.items():
        write("telegram_update", name, data)

    for name, head in HTTP_HEADS.items():
        write("http_request_head", name, head)

    users = json.loads((ROOT / "tests/vectors/username.json").read_text())
    accepted = [c["username"] for c in users["accept"]][::6]
    seen_codes, rejected = set(), []
    for c in users["reject"]:
        if c["code"] not in seen_codes and c["username"]:
            seen_codes.add(c["code"])
            rejected.append(c["username"])
    for i, u in enumerate(accepted + rejected):
        write("username", f"vector_{i:02}", u)

    egress = json.loads((ROOT / "tests/vectors/egress.json").read_text())
    cases, seen = [], set()
    for i, c in enumerate(egress["cases"]):
        key = (c["expect"], c.get("code"))
        if key not in seen or i % 25 == 0:
            seen.add(key)
            cases.append(c)
    for i, c in enumerate(cases):
        write("egress_host", f"vector_{i:02}", struct.pack(">H", c["port"]) + c["host"].encode())

    ecdsa, rsa = bytes.fromhex("".join(ECDSA_CERT)), bytes.fromhex("".join(RSA_CERT))
    write("spki", "ecdsa_p256.der", ecdsa)
    write("spki", "rsa2048.der", rsa)
    write("spki", "long_length_form", bytes([0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF]))

    for i, link in enumerate(PAIRING_LINKS):
        write("pairing_link", f"link_{i}", link)

    write("config", "packaging_traffix.toml", (ROOT / "packaging/traffix.toml").read_bytes())
    for name, text in CONFIGS.items():
        write("config", name + ".toml", text)

    for i, m in enumerate(MONEY):
        write("money", f"amount_{i:02}", m)

    # geoip_archive: MaxMind's checksum line, a gzip file, MaxMind's tar.gz layout (the database
    # bytes are a stand-in: the target also opens its whole input as a MaxMind DB).
    write("geoip_archive", "sha256_line", b"a" * 64 + b"  GeoLite2-Country_20260512.tar.gz\n")
    write("geoip_archive", "mmdb_gz", gzip.compress(b"\xab\xcd\xefMaxMind.com" + b"\0" * 64, mtime=0))
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, data in [("COPYRIGHT.txt", b"(c) MaxMind"), ("GeoLite2-Country.mmdb", b"\xab\xcd\xefMaxMind.com")]:
            info = tarfile.TarInfo(f"GeoLite2-Country_20260512/{name}")
            info.size, info.mtime = len(data), 0
            t.addfile(info, io.BytesIO(data))
    # Compressed apart with mtime 0 ("w:gz" stamps the current time): the seeds are reproducible.
    write("geoip_archive", "maxmind_tar_gz", gzip.compress(tar.getvalue(), mtime=0))
    # Payment webhooks: a header length byte, the header, the body.
    import hashlib
    import hmac
    for name, (header, body) in PAYMENT_WEBHOOKS.items():
        if header is None:
            sig = hmac.new(b"fuzz-secret", b"1700000000." + body, hashlib.sha256).hexdigest()
            header = f"t=1700000000,v1={sig}".encode()
        write("payment_webhook", name, bytes([len(header)]) + header + body)

    # Android Key Attestation: a KeyDescription with the real layout (mode byte 0), and chains
    # of the bundled Google roots (mode byte 1, each certificate behind a 2-byte length).
    write("attestation", "key_description", b"\x00" + key_description())
    write("attestation", "key_description_trailing", b"\x00" + key_description() + b"\x00")
    roots = pem_certs((ROOT / "assets/trust/google-attestation-roots.pem").read_text())
    write("attestation", "google_roots_chain", b"\x01" + b"".join(struct.pack(">H", len(c)) + c for c in roots))
    write("attestation", "ecdsa_leaf_chain", b"\x01" + struct.pack(">H", len(ecdsa)) + ecdsa)


def tlv(tag, content):
    n = len(content)
    if n < 0x80:
        return bytes(tag) + bytes([n]) + content
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes(tag) + bytes([0x80 | len(b)]) + b + content


def key_description():
    """The KeyDescription of src/trust/testkit.rs `Attest::good` (StrongBox, locked, verified)."""
    seq = lambda *parts: tlv([0x30], b"".join(parts))
    rot = tlv([0xBF, 0x85, 0x40], seq(tlv([0x04], b"\xaa" * 32), tlv([0x01], b"\xff"), tlv([0x0A], b"\x00"),
                                       tlv([0x04], b"\xbb" * 32)))
    info = seq(tlv([0x04], b"net.traffix.node"), tlv([0x02], b"\x07"))
    app_id = seq(tlv([0x31], info), tlv([0x31], tlv([0x04], b"\x5a" * 32)))
    app = tlv([0xBF, 0x85, 0x45], tlv([0x04], app_id))
    origin = tlv([0xBF, 0x85, 0x3E], tlv([0x02], b"\x00"))
    return seq(tlv([0x02], b"\x01\x2c"), tlv([0x0A], b"\x02"), tlv([0x02], b"\x01\x2c"), tlv([0x0A], b"\x02"),
               tlv([0x04], b"\x07" * 32), tlv([0x04], b""), seq(app), seq(origin, rot))


def pem_certs(text):
    import base64
    out, cur = [], None
    for line in text.splitlines():
        if line.startswith("-----BEGIN CERTIFICATE"):
            cur = []
        elif line.startswith("-----END CERTIFICATE"):
            out.append(base64.b64decode("".join(cur)))
            cur = None
        elif cur is not None:
            cur.append(line.strip())
    return out


if __name__ == "__main__":
    main()
