"""Policy files (docs/policies.md): read into SourcePolicy lists, and every damage to one
is a PolicyFileError naming the file (and the line where one is known), never another
exception."""

from __future__ import annotations

import random

import pytest

import cardledger
from cardledger import OpKind, PolicyFileError, SourcePolicy, load_policies

GOOD = """\
# who may do what on the Harbin card
[[policy]]            # the bank channel: top-ups from its clearing account, at most 5,000 yuan
first_source = 100
last_source = 199
kinds = ["TOPUP"]
counterparties = [1]
amount_max_fen = 500000

[[policy]]            # a POS: spends into its merchant
first_source = 200
kinds = ["SPEND"]
counterparties = [2]

[[policy]]            # bus validators: taps only
first_source = 10000
last_source = 19999
kinds = ["TAP"]
"""


def write(tmp_path, text, name="policies.toml"):
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(path)


def test_a_policy_file_reads_as_its_policies(tmp_path):
    """Each [[policy]] table is one SourcePolicy; last_source defaults to first_source."""
    assert load_policies(write(tmp_path, GOOD)) == [
        SourcePolicy(100, 199, [OpKind.TOPUP], counterparties=[1], amount_max_fen=500_000),
        SourcePolicy(200, 200, [OpKind.SPEND], counterparties=[2]),
        SourcePolicy(10000, 19999, [OpKind.TAP]),
    ]


def test_an_empty_file_is_the_empty_set(tmp_path):
    assert load_policies(write(tmp_path, "# nothing allowed\n")) == []


def test_a_loaded_file_installs(tmp_path, led):
    """What load_policies returns is what install_policies takes."""
    led.install_policies(load_policies(write(tmp_path, GOOD)))
    assert len(led.policies()) == 3


@pytest.mark.parametrize("text, where", [
    ("[[policy]\nfirst_source = 1\n", r"line 1: TOML syntax error"),
    ("[[policy]]\nfirst_source = 1\nkinds = [\"TOPUP\"\n", r"line \d: TOML syntax error"),
    ("[[policy]]\nfirst_source = 1\nkinds = [\"TOPUPP\"]\n", r"line 1: policy #1: key 'kinds': 'TOPUPP' is not an op kind"),
    ("[[policy]]\nkinds = []\n", r"line 1: policy #1: key 'first_source' is missing"),
    ("\n[[policy]]\nfirst_source = 1\nkinds = []\n[[policy]]\nfirst_source = 0\nkinds = []\n",
     r"line 5: policy #2: key 'first_source': first_source must be in 1..2\*\*64-1"),
    ("[[policy]]\nfirst_source = 1\nkinds = []\ncolour = 3\n", r"line 1: policy #1: unknown key 'colour'"),
    ("[[policy]]\nfirst_source = 1\nkinds = []\naccounts = 7\n", r"policy #1: key 'accounts': accounts must be a list"),
    ("[[policy]]\nfirst_source = 1\nkinds = []\namount_max_fen = -3\n", r"policy #1: key 'amount_max_fen'"),
    ("[[policy]]\nfirst_source = 1\nlast_source = 9\nkinds = []\n[[policy]]\nfirst_source = 5\nkinds = []\n",
     r"line 5: policy #2 SourcePolicy\(5, 5.*overlaps policy #1 SourcePolicy\(1, 9.*\(line 1\)"),
    ("policy = 3\n", r"'policy' must be an array of tables"),
    ("owner = \"bank\"\n", r"unknown top-level key 'owner'"),
    (b"[[policy]]\nfirst_source = 1\xff\n", r"line 2: not UTF-8 text"),
])
def test_each_mistake_names_the_file_line_policy_and_key(tmp_path, text, where):
    path = write(tmp_path, text)
    with pytest.raises(PolicyFileError, match=where) as e:
        load_policies(path)
    assert str(e.value).startswith(path + ":")
    assert isinstance(e.value, ValueError) and e.value.path == path


def damage(r: random.Random, data: bytes) -> bytes:
    """One to four random edits: a byte changed, deleted, inserted, duplicated, or a
    line cut, moved or repeated."""
    b = bytearray(data)
    for _ in range(r.randint(1, 4)):
        i = r.randrange(len(b) + 1)
        what = r.randrange(7)
        if what == 0 and i < len(b):
            b[i] = r.randrange(256)
        elif what == 1 and i < len(b):
            del b[i]
        elif what == 2:
            b[i:i] = bytes([r.choice(b'[]="#,.-0123456789\n\\ {}') if r.random() < 0.8 else r.randrange(256)])
        elif what == 3 and i < len(b):
            j = min(len(b), i + r.randint(1, 40))
            b[i:i] = b[i:j]
        else:
            lines = bytes(b).split(b"\n")
            k = r.randrange(len(lines))
            if what == 4:
                del lines[k]
            elif what == 5:
                lines.insert(r.randrange(len(lines) + 1), lines.pop(k))
            else:
                lines.insert(k, lines[k])
            b = bytearray(b"\n".join(lines))
    return bytes(b)


def test_randomly_damaged_policy_files_fail_clearly_or_load(tmp_path):
    """Bounded fuzz: 1,500 damaged copies of a good file each either load (to valid
    policies) or raise PolicyFileError whose message names the file; no other
    exception ever escapes."""
    r = random.Random(24)
    path = str(tmp_path / "damaged.toml")
    loaded = failed = 0
    for _ in range(1500):
        data = damage(r, GOOD.encode())
        with open(path, "wb") as f:
            f.write(data)
        try:
            out = load_policies(path)
        except PolicyFileError as e:
            assert str(e).startswith(path + ":"), str(e)
            failed += 1
        else:
            assert all(isinstance(p, SourcePolicy) for p in out)
            cardledger.policies.check_set(out)
            loaded += 1
    assert failed > 500 and loaded > 50  # the damage reaches both outcomes
