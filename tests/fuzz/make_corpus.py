#!/usr/bin/env python3
"""Writes the seed corpus of the frame-parser fuzz target (tests/fuzz/corpus/frame_parser/).

Each seed is the fuzz input layout of frame_parser_fuzz.cpp: flags, max_message
byte, chunk-length count and lengths, then a client byte stream. Run it again
after changing the seeds; the corpus is checked in so CI needs no Python.
"""
import os
import shutil
import struct
import sys

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "frame_parser")

BINARY = 0x01
STOP_ON_CLOSE = 0x02
UNLIMITED = 0x0C
MAX_HIGH = 0x10  # adds 256 to the max_message byte
REPEAT = 0x20

MASK0 = b"\0\0\0\0"  # the payload on the wire is the plaintext: easy to mutate
MASK = b"\x37\xfa\x21\x3d"


def frame(op, payload=b"", fin=True, mask=MASK, rsv=0, masked=True, length=None, ext=None):
    """A client frame; `length`/`ext` force a header encoding ('16' or '64')."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | rsv | op
    m = 0x80 if masked else 0
    if ext == "16" or (ext is None and 126 <= n <= 0xFFFF):
        head = bytes([b0, m | 126]) + struct.pack(">H", n)
    elif ext == "64" or (ext is None and n > 0xFFFF):
        head = bytes([b0, m | 127]) + struct.pack(">Q", n)
    else:
        head = bytes([b0, m | n])
    if not masked:
        return head + payload
    body = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    return head + mask + body


def seed(flags, max_message, chunks, stream):
    assert len(chunks) <= 32 and all(0 <= c <= 255 for c in chunks)
    flags |= MAX_HIGH if max_message >= 256 else 0
    return bytes([flags, max_message & 0xFF, len(chunks)]) + bytes(chunks) + stream


def close(code=None, reason=b"", **kw):
    payload = b"" if code is None else struct.pack(">H", code) + reason
    return frame(0x8, payload, **kw)


def seeds():
    euro = "€".encode()  # E2 82 AC
    smile = "😀".encode()  # F0 9F 98 80
    yield "text_single", seed(0, 200, [], frame(0x1, b"Hello", mask=MASK0))
    yield "text_masked_bytewise", seed(REPEAT, 200, [1], frame(0x1, b"Hello, world"))
    yield "text_fragmented_ping_between", seed(0, 200, [3, 9, 4], frame(0x1, b"Hel", fin=False, mask=MASK0)
                                                + frame(0x9, b"p", mask=MASK0)
                                                + frame(0x0, b"lo", mask=MASK0))
    yield "text_fragment_splits_utf8", seed(REPEAT, 200, [5, 2], frame(0x1, b"a" + euro[:1], fin=False)
                                            + frame(0x0, euro[1:] + smile[:2], fin=False)
                                            + frame(0x0, smile[2:] + b"z"))
    yield "text_16bit_length", seed(0, 300, [10, 100], frame(0x1, b"x" * 200))
    yield "text_16bit_length_126", seed(0, 300, [], frame(0x1, b"y" * 126, mask=MASK0))
    yield "binary_64bit_length_truncated", seed(BINARY | UNLIMITED, 0, [14, 20],
                                                frame(0x2, b"\x00\x01" * 40, length=70000))
    yield "binary_64bit_length_too_big", seed(BINARY, 300, [], frame(0x2, b"z" * 8, length=70000))
    yield "close_code_reason", seed(STOP_ON_CLOSE, 100, [], close(1000, b"bye") + frame(0x1, b"after"))
    yield "close_then_more_frames", seed(0, 100, [7], close(4999, "ok ✓".encode(), mask=MASK0)
                                         + frame(0x9, b"") + close())
    yield "close_empty", seed(STOP_ON_CLOSE, 0, [], close())
    yield "close_one_byte", seed(0, 0, [], frame(0x8, b"\x03"))
    yield "close_code_1005", seed(0, 0, [], close(1005))
    yield "close_code_2999", seed(0, 0, [2], close(2999, b"x", mask=MASK0))
    yield "close_reason_not_utf8", seed(0, 0, [], close(1001, b"\xc3\x28"))
    yield "text_overlong", seed(0, 100, [], frame(0x1, b"ab\xc0\x80cd", mask=MASK0))
    yield "text_surrogate", seed(0, 100, [8], frame(0x1, b"\xed\xa0\x80", mask=MASK0))
    yield "text_above_10ffff", seed(0, 100, [], frame(0x1, b"\xf4\x90\x80\x80", mask=MASK0))
    yield "text_truncated_sequence", seed(0, 100, [], frame(0x1, b"ok\xe2\x82", mask=MASK0))
    yield "text_4byte_bytewise", seed(REPEAT, 100, [1], frame(0x1, smile * 3 + euro))
    yield "binary_allowed", seed(BINARY, 100, [], frame(0x2, bytes(range(40))))
    yield "binary_refused", seed(0, 100, [], frame(0x2, b"\x00\xff"))
    yield "unmasked", seed(0, 100, [], frame(0x1, b"hi", masked=False))
    yield "reserved_bits", seed(0, 100, [], frame(0x1, b"hi", rsv=0x40))
    yield "reserved_opcodes", seed(0, 100, [], frame(0x3, b"") + frame(0xB, b""))
    yield "fragmented_ping", seed(0, 100, [], frame(0x9, b"p", fin=False))
    yield "ping_126_bytes", seed(0, 300, [], frame(0x9, b"p" * 126))
    yield "ping_pong_payloads", seed(REPEAT, 100, [3, 0, 5], frame(0x9, b"ping-data") + frame(0xA, b"pong")
                                     + frame(0x9, b"x" * 125, mask=MASK0))
    yield "continuation_without_start", seed(0, 100, [], frame(0x0, b"orphan"))
    yield "new_message_inside_fragmented", seed(0, 100, [], frame(0x1, b"a", fin=False) + frame(0x1, b"b"))
    yield "nonminimal_16bit", seed(0, 100, [], frame(0x1, b"short", ext="16"))
    yield "nonminimal_64bit", seed(BINARY, 300, [], frame(0x2, b"mid" * 50, ext="64"))
    yield "64bit_top_bit", seed(BINARY | UNLIMITED, 0, [], frame(0x2, b"", length=1 << 63, ext="64"))
    yield "too_big_across_fragments", seed(0, 10, [], frame(0x1, b"123456", fin=False)
                                           + frame(0x0, b"789", fin=False) + frame(0x0, b"ab"))
    yield "empty_messages", seed(BINARY, 0, [0, 2, 0, 6], frame(0x1, b"") + frame(0x2, b"", fin=False)
                                 + frame(0x0, b"", fin=False) + frame(0x9, b"") + frame(0x0, b""))
    yield "several_messages_one_read", seed(BINARY, 300, [], frame(0x1, b"one") + frame(0x2, b"two")
                                            + frame(0x1, "три".encode()) + frame(0xA, b""))


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    count = 0
    for name, data in seeds():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        count += 1
    print(f"wrote {count} seeds to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
