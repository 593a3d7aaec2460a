"""The XML every XML format shares: the root element found by content in UTF-8, UTF-16 LE/BE (with or without a
byte-order mark) or UTF-32, behind an XML declaration or not; the document parsed once with defusedxml (entity
expansion, external entities and DTD fetches refused) after its cost is bounded; local-name lookups.

PageWriter carts write Sierra XML in UTF-16 with a byte-order mark; MUSE, aECG and CardioSoft files are UTF-8
or ISO-8859-1. A document with more than MAX_ELEMENTS elements is refused before it is parsed (its tags are
counted, ~20 ms for 40 MB): the largest real ECG document here (an HL7 aECG with its per-beat annotations) has
2,371 tags, 10 million empty elements cost 22 s and 2 GB to parse, and 600,000 still took 4.6 s.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import EcgReadError, one_line

MAX_ELEMENTS = 50_000      # ~0.4 s to parse at most
_INSTALL = "reading {what} needs defusedxml (pip install defusedxml)"
_BOMS = ((b"\x00\x00\xfe\xff", "utf-32-be"), (b"\xff\xfe\x00\x00", "utf-32-le"), (b"\xef\xbb\xbf", "utf-8"),
         (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))


def xml_encoding(head: bytes) -> tuple[str, int]:
    """The encoding a document's first bytes show (byte-order mark, else the pattern of '<' or whitespace in
    UTF-16/32 without one; else UTF-8) and the BOM's length."""
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name, len(bom)
    if len(head) >= 4 and head[1:4] == b"\x00\x00\x00" and head[0]:
        return "utf-32-le", 0
    if len(head) >= 4 and head[:3] == b"\x00\x00\x00" and head[3]:
        return "utf-32-be", 0
    if len(head) >= 2 and head[0] and not head[1] and head[0] in b"< \t\r\n":
        return "utf-16-le", 0
    if len(head) >= 2 and not head[0] and head[1] in b"< \t\r\n":
        return "utf-16-be", 0
    return "utf-8", 0


def head_text(head: bytes) -> str:
    """The file's first bytes as text in the encoding they show (undecodable bytes replaced)."""
    encoding, skip = xml_encoding(head)
    unit = 4 if "32" in encoding else 2 if "16" in encoding else 1
    body = head[skip:]
    return body[:len(body) - len(body) % unit].decode(encoding, errors="replace")


def xml_root(pattern: re.Pattern, head: bytes) -> bool:
    """An XML document (in any of the encodings above) whose root element matches `pattern` (a str pattern)
    within the file's first bytes."""
    text = head_text(head).lstrip(" \t\r\n\ufeff")
    return text.startswith("<") and pattern.search(text) is not None


def root_pattern(name: str) -> re.Pattern:
    """The opening tag of root element `name`, with or without a namespace prefix."""
    return re.compile(rf"<(?:[A-Za-z_][\w.-]*:)?{name}[\s>/]")


def utf8_bytes(path: Path, data: bytes) -> bytes:
    """The document as UTF-8 with its declaration's encoding made to agree, for parsers that only take UTF-8
    (a UTF-16/32 file is transcoded; anything else is returned as it is)."""
    encoding, skip = xml_encoding(data[:4])
    if encoding == "utf-8":
        return data
    try:
        text = data[skip:].decode(encoding)
    except UnicodeDecodeError as exc:
        raise EcgReadError(path, f"XML is not valid {encoding.upper()} (byte {exc.start + skip})") from None
    text = re.sub(r"^(\s*<\?xml[^>]*?encoding\s*=\s*)(['\"])[^'\"]*\2", r"\1\2utf-8\2", text, count=1)
    return text.encode("utf-8")


def check_cost(path: Path, data: bytes, what: str) -> None:
    """Refuse a document with more elements than any ECG has, before the parser builds them."""
    tags = data.count(b"<")
    if tags > 2 * MAX_ELEMENTS:                     # each element has an opening and (mostly) a closing tag
        raise EcgReadError(path, f"{what} has {tags} tags: more than an ECG document holds ({MAX_ELEMENTS} "
                                 "elements at most)")


def parse(path: Path, what: str):
    """The root element of the document at `path`, parsed once with defusedxml after check_cost."""
    try:
        import defusedxml
        import defusedxml.ElementTree as ET
    except ImportError:
        raise EcgReadError(path, _INSTALL.format(what=what)) from None
    data = path.read_bytes()
    check_cost(path, data, what)
    try:
        return ET.fromstring(utf8_bytes(path, data))
    except defusedxml.DefusedXmlException as exc:
        raise EcgReadError(path, f"XML refused: {one_line(exc)} (entities and external references are not "
                                 "read from untrusted files)") from None
    except ET.ParseError as exc:
        raise EcgReadError(path, f"not well-formed XML: {one_line(exc)}") from None


# Sierra and CardioSoft XML may put every element in a default namespace: match local names.
def local(tag) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def find(element, path: str):
    """The first child by local names along `path` ("a/b/c"), or None."""
    for name in path.split("/"):
        if element is None:
            return None
        element = next((child for child in element if local(child.tag) == name), None)
    return element


def findall(element, name: str) -> list:
    return [] if element is None else [child for child in element if local(child.tag) == name]


def descendant(element, name: str):
    """The first element named `name` at any depth, or None."""
    return next((e for e in element.iter() if local(e.tag) == name), None)


def text(element) -> str:
    """An element's text, stripped; "" for no element or no text."""
    return "" if element is None or element.text is None else element.text.strip()
