"""The GGUF files of a repository grouped into quantization variants.

File names follow the converters' habits: `Model-Q4_K_M.gguf`, `model.Q4_K_M.gguf` (TheBloke),
`model-q4_k_m.gguf`, `Model-UD-Q2_K_XL.gguf` (unsloth dynamic), and models too big for one file
are split into `NAME-00001-of-0000N.gguf` parts, often inside a folder named after the variant
(`UD-Q2_K_XL/Model-UD-Q2_K_XL-00001-of-00003.gguf`). Parts of one split model form one variant;
vision projectors (`mmproj-*.gguf`) and non-GGUF files are not variants.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

SPLIT = re.compile(r"^(?P<stem>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
# One quantization token: Q4_K_M, Q8_0, Q4_0_4_4, Q3_K_XL, IQ2_XXS, IQ4_NL, TQ1_0, F16, BF16, MXFP4_MOE
QUANT = re.compile(r"^(?:I?Q\d+(?:_[A-Z0-9]+)*|TQ\d+_\d+|BF16|FP16|F16|F32|FP32|MXFP4(?:_MOE)?)$",
                   re.IGNORECASE)


@dataclass(frozen=True)
class RepoFile:
    path: str                    # path inside the repository
    size: int                    # bytes
    sha256: str | None = None    # the LFS sha256 the Hub publishes (None for small non-LFS files)
    revision: str = "main"       # the commit the listing came from: bytes and sha256 stay consistent


@dataclass
class Variant:
    name: str                    # "Q4_K_M", "UD-Q2_K_XL", or the file stem when no quant is named
    quant: str                   # the quantization alone: "Q4_K_M", "Q2_K_XL", "" if unknown
    files: list[RepoFile] = field(default_factory=list)   # split parts in order

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def first(self) -> RepoFile:
        return self.files[0]

    @property
    def complete(self) -> bool:
        """False when a split model lacks some of its parts in the repository."""
        m = SPLIT.match(self.files[0].path.rsplit("/", 1)[-1])
        return not m or len(self.files) == int(m["count"])


def is_model_file(path: str) -> bool:
    name = path.rsplit("/", 1)[-1].lower()
    return name.endswith(".gguf") and "mmproj" not in name


def split_base(path: str) -> tuple[str, int]:
    """('dir/Model-Q4_K_M', part number) for a split part; (path without .gguf, 1) otherwise."""
    d, _, name = path.rpartition("/")
    m = SPLIT.match(name)
    stem, no = (m["stem"], int(m["no"])) if m else (name[:-5] if name.lower().endswith(".gguf")
                                                     else name, 1)
    return (f"{d}/{stem}" if d else stem), no


def parse_quant(path: str) -> tuple[str, str]:
    """(variant name, quant) from a file path, e.g. 'x/Model-UD-Q2_K_XL-00001-of-00002.gguf'
    -> ('UD-Q2_K_XL', 'Q2_K_XL'). The last quantization token of the file name wins; a folder
    named after the quantization is used when the file name has none."""
    base, _ = split_base(path)
    for part in reversed(base.split("/")):
        tokens = re.split(r"[-.]", part)
        for i in range(len(tokens) - 1, -1, -1):
            if QUANT.match(tokens[i]):
                quant = tokens[i].upper()
                ud = i > 0 and tokens[i - 1].upper() == "UD"
                return (f"UD-{quant}" if ud else quant), quant
    stem = base.rsplit("/", 1)[-1]
    return stem, ""


def group_variants(files: list[RepoFile]) -> list[Variant]:
    """Variants of a repository's files, smallest first."""
    groups: dict[str, list[tuple[int, RepoFile]]] = {}
    for f in files:
        if is_model_file(f.path):
            base, no = split_base(f.path)
            groups.setdefault(base, []).append((no, f))
    variants = []
    for base, parts in groups.items():
        parts.sort(key=lambda t: t[0])
        name, quant = parse_quant(parts[0][1].path)
        variants.append(Variant(name, quant, [f for _, f in parts]))
    _disambiguate(variants)
    variants.sort(key=lambda v: (v.size, v.name))
    return variants


def _disambiguate(variants: list[Variant]) -> None:
    """Two groups with one quant name (e.g. two models in one repository) get their stems added."""
    seen: dict[str, int] = {}
    for v in variants:
        seen[v.name] = seen.get(v.name, 0) + 1
    for v in variants:
        if seen[v.name] > 1:
            stem = split_base(v.first.path)[0].rsplit("/", 1)[-1]
            if stem != v.name:
                v.name = f"{v.name} ({stem})"


def find_variant(variants: list[Variant], name: str) -> Variant | None:
    """The variant called `name` (case-insensitive; 'Q4_K_M' also finds 'UD-Q4_K_M' if alone)."""
    want = name.upper()
    exact = [v for v in variants if v.name.upper() == want]
    if exact:
        return exact[0]
    loose = [v for v in variants if v.quant.upper() == want]
    return loose[0] if len(loose) == 1 else None
