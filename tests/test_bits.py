"""annt.bits: the one parser, checker, namer and order of bit widths."""
import numpy as np
import pytest

from annt import bits


@pytest.mark.parametrize("given, want", [("fp", 32), ("FP", 32), (32, 32), ("32", 32), ("4bit", 4), ("4", 4),
                                         (1, 1), (16, 16), ("16bits", 16), (np.int64(8), 8)])
def test_parse_reads_every_spelling(given, want):
    assert bits.parse(given) == want


@pytest.mark.parametrize("bad", [3, 0, 64, -4, 33, "int8", True, 2.0, 2.5, None, "", [4]])
def test_parse_rejects_non_widths(bad):
    with pytest.raises(ValueError):
        bits.parse(bad)


def test_check_accepts_int_valued_numbers_only():
    assert bits.check(4) == 4 and bits.check(4.0) == 4 and bits.check(np.int32(12)) == 12
    for bad in (3, 0, 64, True, 2.5, "4", None):
        with pytest.raises(ValueError, match="must be one of"):
            bits.check(bad, "weight_bits")


@pytest.mark.parametrize("given, tag, label", [
    (32, "fp", "FP"), (None, "fp", "FP"), ("fp", "fp", "FP"), (4, "4bit", "4"), (16, "16bit", "16"),
    ({"weights": 4, "activations": 4}, "4bit", "4"), ({"weights": "fp", "activations": 32}, "fp", "FP"),
    ({"weights": 2, "activations": 4}, "w2a4", "W2A4"), ({"weights": 1, "activations": 32}, "w1afp", "W1A32"),
    ({"weights": 32, "activations": 4}, "wfpa4", "W32A4"),
])
def test_tag_and_label(given, tag, label):
    assert bits.tag(given) == tag
    assert bits.label(given) == label


def test_mapping_without_both_keys_is_refused():
    with pytest.raises(ValueError):
        bits.label({"weights": 4})


def test_order_is_full_precision_first_then_increasing():
    assert bits.WIDTHS == (32, 1, 2, 4, 8, 12, 16)
    shuffled = ["16", "W2A4", "FP", "mnist_a", "1", "12", "4", "2", "8"]
    assert bits.label_order(shuffled) == ["FP", "1", "2", "W2A4", "4", "8", "12", "16", "mnist_a"]
    assert sorted([16, "fp", 1, {"weights": 4, "activations": 8}], key=bits.sort_key) == \
        ["fp", 1, {"weights": 4, "activations": 8}, 16]


def test_allowed_lists_what_users_write():
    assert bits.allowed() == "fp, 1, 2, 4, 8, 12, 16"
