"""`msgpp download`, `msgpp convert-msg` and `msgpp enhancers list`: the MSG authors' generators.

    msgpp download paper-bass paper-drums         # fetch and convert ahead of time (then works offline)
    msgpp convert-msg bass29netG.pt --source bass --out weights/
    msgpp enhancers list                          # shipped / downloaded / downloadable
"""
from __future__ import annotations

import json
from pathlib import Path

from msgpp.errors import MsgppError


def register(subparsers) -> None:
    download = subparsers.add_parser(
        "download", help="download published weights ahead of time (paper-bass, paper-drums, paper-vocals)",
        description="Download the MSG authors' published generators from the Hugging Face hub (huggingface_hub's "
                    "cache; HF_ENDPOINT, HF_HUB_CACHE and HF_HUB_OFFLINE apply) and convert them into msgpp's "
                    "weights cache, so `--model paper-bass` works offline afterwards.",
    )
    download.add_argument("names", nargs="+", metavar="NAME", help="paper-bass, paper-drums, paper-vocals, or all")
    download.add_argument("--force", action="store_true", help="download and convert again even when cached")
    download.set_defaults(func=run_download)

    convert = subparsers.add_parser(
        "convert-msg", help="convert an MSG authors' generator checkpoint into msgpp's inference file",
        description="Convert a generator state dict of the MSG reference code (e.g. bass29netG.pt) into msgpp's "
                    "inference file <out>/<name>-<sha8>.pt plus a model card <out>/<name>.md.",
    )
    convert.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="their generator file (a raw state_dict)")
    convert.add_argument("--source", required=True, help="the source it enhances: bass, drums, vocals ...")
    convert.add_argument("--out", type=Path, required=True, help="output folder")
    convert.add_argument("--name", help="file stem (default: msg-paper-<source>)")
    convert.set_defaults(func=run_convert)

    enhancers = subparsers.add_parser("enhancers", help="list the enhancers msgpp knows by name")
    actions = enhancers.add_subparsers(dest="enhancers_command", metavar="<action>", required=True)
    listing = actions.add_parser("list", help="shipped, downloaded and downloadable enhancers")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=run_list)


def run_download(args) -> int:
    from msgpp import published

    names = list(published.PUBLISHED) if args.names == ["all"] else args.names
    for name in names:
        if name not in published.PUBLISHED:
            raise MsgppError(f"unknown published name {name!r}; choose from {', '.join(published.PUBLISHED)} (or all)")
    for name in dict.fromkeys(names):
        path = published.ensure(name, force=args.force)
        print(f"{name}: {path}")
    return 0


def run_convert(args) -> int:
    from msgpp import published

    if args.out.exists() and not args.out.is_dir():
        raise MsgppError(f"--out {args.out}: exists and is not a folder")
    if args.name is not None:
        from msgpp.hub import check_file_stem

        check_file_stem(args.name)
    path = published.convert_checkpoint(args.checkpoint, args.source, args.out, stem=args.name)
    print(path)
    return 0


def rows() -> list[dict]:
    from msgpp import published
    from msgpp.hub import pretrained_names

    found = [{"name": name, "source": name, "status": "shipped", "where": str(path)}
             for name, path in sorted(pretrained_names().items())]
    for name, entry in published.PUBLISHED.items():
        state = published.status(name)
        where = published.cached(name) or published.in_hub_cache(name) or published.source_url(entry)
        found.append({"name": name, "source": entry.source, "status": state, "where": str(where)})
    return found


def run_list(args) -> int:
    table = rows()
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    width = max(len(row["name"]) for row in table)
    state_width = max(len(row["status"]) for row in table)
    for row in table:
        print(f"{row['name']:<{width}}  {row['status']:<{state_width}}  {row['where']}")
    return 0
