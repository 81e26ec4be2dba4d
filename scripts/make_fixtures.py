#!/usr/bin/env python3
"""Writes the test fixtures in tests/fixtures/: a one-page supplier price list as a real PDF
with a text layer (Helvetica, one text line per row), the same list as CSV, and a tiny PNG.
Run it again to regenerate them; the tests read the committed files."""
import os
import struct
import zlib

HERE = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")

ROWS = [
    "Alder & Co. supplier price list 2026",
    "Ceramic mug blue          EUR 12.50",
    "Stoneware teapot 1.2 l    EUR 34.90",
    "SKU CRK-004 Cork coasters (set of 4)   EUR 8.00",
    "Total                     EUR 55.40",
]


def pdf_file(content, resources):
    """A one-page PDF with this content stream and page `/Resources` dictionary."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources " + resources + b" >>",
        b"<< /Length " + str(len(content)).encode() + b" >>\nstream\n" + content + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def poison_pdf():
    """The page selects font /F1 but its /Resources are empty: pdf-extract panics on it (a
    Rust panic aborts the wasm instance), which the jobs Worker must survive."""
    return pdf_file(b"BT /F1 12 Tf 72 720 Td (Hello) Tj ET", b"<< >>")


def pdf():
    lines = ["BT /F1 12 Tf 72 740 Td 16 TL"]
    for i, row in enumerate(ROWS):
        text = row.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        lines.append(f"({text}) Tj" if i == 0 else f"T* ({text}) Tj")
    lines.append("ET")
    content = "\n".join(lines).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(content)).encode() + b" >>\nstream\n" + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def png():
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * 4 for _ in range(4))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def main():
    os.makedirs(HERE, exist_ok=True)
    with open(os.path.join(HERE, "price-list.pdf"), "wb") as f:
        f.write(pdf())
    with open(os.path.join(HERE, "poison.pdf"), "wb") as f:
        f.write(poison_pdf())
    with open(os.path.join(HERE, "price-list.csv"), "w", encoding="utf-8") as f:
        f.write("product,price\nLinen napkin,€ 4,50\nOak board,19,90 €\n")
    with open(os.path.join(HERE, "label.png"), "wb") as f:
        f.write(png())


if __name__ == "__main__":
    main()
