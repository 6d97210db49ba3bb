#!/usr/bin/env python3
"""Independent check of QUIC v1 Initials in a pcap (tshark cannot show the SNI of a ClientHello that
is incomplete or cut into out-of-order CRYPTO frames). Decrypts every client Initial (RFC 9001 §5),
collects its CRYPTO frames per connection, and prints for each connection: the Initial count, which
byte ranges of the ClientHello arrived, whether the hello is complete, and the SNI if the
server_name extension's bytes all arrived.

  quic_initials.py FILE.pcap

Needs python3-cryptography (AES-GCM, AES-ECB for header protection). Classic pcap, Ethernet only.
"""

import hashlib
import hmac
import struct
import sys

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

INITIAL_SALT_V1 = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")


def hkdf_extract(salt, ikm):
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def hkdf_expand_label(secret, label, length):
    full = b"tls13 " + label
    info = struct.pack("!H", length) + bytes([len(full)]) + full + b"\x00"
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(secret, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def client_keys(dcid):
    initial = hkdf_extract(INITIAL_SALT_V1, dcid)
    secret = hkdf_expand_label(initial, b"client in", 32)
    return (
        hkdf_expand_label(secret, b"quic key", 16),
        hkdf_expand_label(secret, b"quic iv", 12),
        hkdf_expand_label(secret, b"quic hp", 16),
    )


def varint(buf, at):
    first = buf[at]
    length = 1 << (first >> 6)
    value = first & 0x3F
    for i in range(1, length):
        value = (value << 8) | buf[at + i]
    return value, at + length


def udp_payloads(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    at = 24
    while at + 16 <= len(data):
        _, _, caplen, _ = struct.unpack(endian + "IIII", data[at:at + 16])
        frame = data[at + 16:at + 16 + caplen]
        at += 16 + caplen
        if len(frame) < 14 + 20 or frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        if ip[9] != 17:
            continue
        udp = ip[ihl:]
        dport = struct.unpack("!H", udp[2:4])[0]
        if dport == 53:
            continue
        yield dport, udp[8:]


def decrypt_initial(packet):
    """(dcid, plaintext) of the first packet in a datagram if it is a client Initial, else None."""
    if len(packet) < 7 or packet[0] & 0xC0 != 0xC0 or packet[1:5] != b"\x00\x00\x00\x01":
        return None
    if (packet[0] >> 4) & 0x03 != 0:
        return None
    at = 5
    dcid = packet[at + 1:at + 1 + packet[at]]
    at += 1 + packet[at]
    at += 1 + packet[at]  # scid
    token_len, at = varint(packet, at)
    at += token_len
    length, at = varint(packet, at)
    pn_offset = at
    key, iv, hp = client_keys(dcid)
    sample = packet[pn_offset + 4:pn_offset + 20]
    mask = Cipher(algorithms.AES(hp), modes.ECB()).encryptor().update(sample)
    first = packet[0] ^ (mask[0] & 0x0F)
    pn_len = (first & 0x03) + 1
    pn_bytes = bytes(packet[pn_offset + i] ^ mask[1 + i] for i in range(pn_len))
    pn = int.from_bytes(pn_bytes, "big")
    header = bytes([first]) + packet[1:pn_offset] + pn_bytes
    nonce = bytes(a ^ b for a, b in zip(iv, pn.to_bytes(12, "big")))
    ciphertext = packet[pn_offset + pn_len:pn_offset + length]
    return dcid, pn, AESGCM(key).decrypt(nonce, ciphertext, header)


def crypto_frames(plain):
    at = 0
    while at < len(plain):
        kind = plain[at]
        if kind in (0x00, 0x01):
            at += 1
        elif kind in (0x02, 0x03):
            at += 1
            _, at = varint(plain, at)
            _, at = varint(plain, at)
            count, at = varint(plain, at)
            _, at = varint(plain, at)
            for _ in range(count * 2):
                _, at = varint(plain, at)
            if kind == 0x03:
                for _ in range(3):
                    _, at = varint(plain, at)
        elif kind == 0x06:
            offset, at = varint(plain, at + 1)
            length, at = varint(plain, at)
            yield offset, plain[at:at + length]
            at += length
        else:
            return


def sni_of(hello, have):
    """SNI if the ClientHello's server_name extension is fully within `have` (a bytearray mask)."""
    def ok(a, b):
        return b <= len(have) and all(have[a:b])
    if not ok(0, 4) or hello[0] != 1:
        return None
    at = 4 + 2 + 32
    if not ok(at, at + 1):
        return None
    at += 1 + hello[at]
    if not ok(at, at + 2):
        return None
    at += 2 + struct.unpack("!H", hello[at:at + 2])[0]
    if not ok(at, at + 1):
        return None
    at += 1 + hello[at]
    if not ok(at, at + 2):
        return None
    end = at + 2 + struct.unpack("!H", hello[at:at + 2])[0]
    at += 2
    while at + 4 <= end and ok(at, at + 4):
        kind, length = struct.unpack("!HH", hello[at:at + 4])
        if kind == 0 and ok(at + 4, at + 4 + length):
            body = hello[at + 4:at + 4 + length]
            return body[5:5 + struct.unpack("!H", body[3:5])[0]].decode("ascii", "replace")
        at += 4 + length
    return None


def main(path):
    connections = {}
    for port, payload in udp_payloads(path):
        try:
            result = decrypt_initial(payload)
        except Exception:  # noqa: BLE001 (a damaged packet is simply not an Initial)
            result = None
        if result is None:
            continue
        dcid, pn, plain = result
        conn = connections.setdefault(dcid, {"port": port, "pns": [], "hello": bytearray(4096), "have": bytearray(4096)})
        conn["pns"].append(pn)
        for offset, data in crypto_frames(plain):
            if offset + len(data) <= 4096:
                conn["hello"][offset:offset + len(data)] = data
                conn["have"][offset:offset + len(data)] = b"\x01" * len(data)
    for dcid, conn in connections.items():
        hello, have = conn["hello"], conn["have"]
        total = 4 + int.from_bytes(hello[1:4], "big") if all(have[0:4]) else None
        complete = total is not None and all(have[0:total])
        got = sum(have)
        print("dcid=%s port=%d initials=%s hello_bytes=%s received=%d complete=%s sni=%s" % (
            dcid.hex(), conn["port"], conn["pns"], total, got, complete, sni_of(hello, have) or "-"))


if __name__ == "__main__":
    main(sys.argv[1])
