"""Screenshot one section of an ``expnet inspect`` report, for the README.

Needs ``wkhtmltoimage`` (Debian: ``apt-get install wkhtmltopdf``), which is no dependency of
the project. ``docs/images/inspect_expressions.png`` was made with::

    .venv/bin/expnet generate --input examples/faces --output /tmp/demo-out --overwrite
    .venv/bin/expnet inspect /tmp/demo-out
    .venv/bin/python docs/report_screenshot.py /tmp/demo-out/report.html \\
        docs/images/inspect_expressions.png --section "Worst fits" --height 386
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from pathlib import Path

from PIL import Image

PAGE_WIDTH = 1240        # pixels: three sample tiles side by side
COLOURS = 256            # the screenshot is palette-quantised to stay small


def section_page(page: str, title: str) -> str:
    """The report's head and the one section titled ``title``, as a page of its own."""
    head = page[:page.index("<body>") + len("<body>")]
    start = page.index(f"<h2>{title}</h2>")
    following = re.compile(r"<h2>").search(page, start + 1)
    end = following.start() if following else page.index("</body>")
    return f"{head}\n{page[start:end]}\n</body></html>\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="report.html written by expnet inspect")
    parser.add_argument("output", type=Path, help="PNG to write")
    parser.add_argument("--section", default="Worst fits", help="title of the section")
    parser.add_argument("--height", type=int, default=None,
                        help="crop to this many pixels from the top (default: all of it)")
    args = parser.parse_args(argv)
    page = section_page(args.report.read_text(encoding="utf-8"), args.section)
    with tempfile.TemporaryDirectory() as folder:
        source, shot = Path(folder) / "section.html", Path(folder) / "section.png"
        source.write_text(page, encoding="utf-8")
        subprocess.run(["wkhtmltoimage", "--quiet", "--width", str(PAGE_WIDTH), str(source),
                        str(shot)], check=True)
        image = Image.open(shot).convert("RGB")
    if args.height is not None:
        image = image.crop((0, 0, image.width, min(args.height, image.height)))
    image.quantize(COLOURS, method=Image.Quantize.MEDIANCUT).save(args.output, optimize=True)
    print(f"{args.output}: {image.width} x {image.height}, {args.output.stat().st_size} bytes")


if __name__ == "__main__":
    main()
