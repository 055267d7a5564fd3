"""`nst info`: the parameters, seed and input hashes recorded in a picture nst made (nst_shared/provenance.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "info",
        help="show how a picture was made (parameters, seed, steps, device, input hashes)",
        description="Print, as JSON, the record nst writes into every picture it makes (PNG, JPEG, WebP or AVIF) "
        "and into the metadata of every clip (MP4, WebM): "
        "the parameters as applied, the seed, the steps done, the device and precision, the "
        "engine's version and the SHA-256 of the content, style and mask images. Exit status 2 "
        "when the file has none. `nst run --from FILE` paints again with them.",
    )
    parser.add_argument("picture", type=Path, metavar="PICTURE")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from nst_shared import provenance
    from nst_shared.clip_info import clip_kind
    from nst_shared.video_io import read_record

    try:
        data = args.picture.read_bytes()
        record = provenance.read(data) if clip_kind(data) in (None, "gif", "webp") else read_record(args.picture)
    except OSError as exc:
        print(f"nst info: cannot read {args.picture}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if record is None:
        print(f"nst info: {args.picture} carries no nst record", file=sys.stderr)
        return 2
    print(json.dumps(record, indent=2))
    return 0
