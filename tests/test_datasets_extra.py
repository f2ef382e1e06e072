"""Fast tests of the extra benchmark data sets: synthetic generators, text extraction, HDF5.

Nothing here needs torch, OpenCV, the network or the Debian packages: the text extractors
run on small inline samples.
"""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from bench.datagen import synthetic, textsets
from bench.harness import datasets

# --------------------------------------------------------------------------- synthetic


def test_random_sphere_shapes_unit_norm_and_seeded():
    train, test = synthetic.random_sphere(500, 20, dim=32, seed=3)
    assert train.shape == (500, 32) and test.shape == (20, 32)
    assert train.dtype == np.float32 and test.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(train, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(test, axis=1), 1.0, atol=1e-5)
    again = synthetic.random_sphere(500, 20, dim=32, seed=3)
    np.testing.assert_array_equal(train, again[0])
    np.testing.assert_array_equal(test, again[1])
    other = synthetic.random_sphere(500, 20, dim=32, seed=4)
    assert not np.array_equal(train, other[0])


def test_random_sphere_train_prefix_and_queries_distinct():
    small, test_small = synthetic.random_sphere(100, 10, dim=16)
    big, test_big = synthetic.random_sphere(300, 10, dim=16)
    np.testing.assert_array_equal(small, big[:100])
    np.testing.assert_array_equal(test_small, test_big)
    assert not np.any(np.all(np.isclose(big[:, None, :], test_big[None]), axis=2))


def test_random_sphere_default_dimension():
    train, test = synthetic.random_sphere(10, 2)
    assert train.shape == (10, synthetic.DIM) == (10, 384) and test.shape == (2, 384)


def test_lowrank_shapes_seeded_and_low_rank():
    dim, rank = 64, 8
    train, test = synthetic.lowrank(2000, 50, dim=dim, rank=rank, noise=0.1, seed=1)
    assert train.shape == (2000, dim) and test.shape == (50, dim)
    assert train.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(train, axis=1), 1.0, atol=1e-5)
    again = synthetic.lowrank(2000, 50, dim=dim, rank=rank, noise=0.1, seed=1)
    np.testing.assert_array_equal(train, again[0])
    np.testing.assert_array_equal(test, again[1])
    # the top `rank` principal directions hold ~1/(1 + noise^2) of the energy
    s = np.linalg.svd(train.astype(np.float64), compute_uv=False)
    energy = np.cumsum(s**2) / np.sum(s**2)
    assert energy[rank - 1] > 0.97
    assert energy[rank - 2] < 0.97


def test_lowrank_queries_share_the_basis():
    dim, rank = 64, 8
    basis = synthetic.lowrank_basis(dim, rank, seed=2)
    np.testing.assert_allclose(basis @ basis.T, np.eye(rank), atol=1e-10)
    _, test = synthetic.lowrank(10, 200, dim=dim, rank=rank, noise=0.1, seed=2)
    residual = test - (test @ basis.T) @ basis
    # unit rows; noise carries ~1 % of the energy, so the off-subspace part is ~0.1 long
    assert np.mean(np.linalg.norm(residual, axis=1)) < 0.15


def test_lowrank_noise_free_is_exactly_rank_r():
    train, _ = synthetic.lowrank(300, 1, dim=40, rank=5, noise=0.0)
    assert np.linalg.matrix_rank(train.astype(np.float64), tol=1e-4) == 5


# --------------------------------------------------------------------------- common text cleanup


def test_collapse_ws_and_split_long():
    assert textsets.collapse_ws("  a\n\tb   c \n") == "a b c"
    sentences = [f"Sentence number {i} is here." for i in range(100)]
    text = " ".join(sentences)
    pieces = textsets.split_long(text, max_chars=200)
    assert all(len(p) <= 200 for p in pieces)
    assert " ".join(pieces) == text
    assert all(p.endswith(".") for p in pieces)  # cut at sentence ends
    assert textsets.split_long("short text", max_chars=200) == ["short text"]


def test_split_long_cuts_a_long_sentence_at_spaces():
    text = " ".join(["word"] * 500)
    pieces = textsets.split_long(text, max_chars=100)
    assert all(len(p) <= 100 for p in pieces)
    assert " ".join(pieces) == text


def test_is_prose_and_to_passages():
    assert textsets.is_prose("This is a perfectly normal sentence of prose.")
    assert not textsets.is_prose("too short")
    assert not textsets.is_prose("x = f(a[0], b[1]) + 0x42 * 17;  // 1234 5678 9")
    assert not textsets.is_prose("|  ||  |\\  /|  |__|  |__|  ---  ===  ***")
    raw = ["  A short   passage\nwith   newlines in it. ", "tiny", "1 2 3 4 5 6 7 8 9 10 11 12"]
    assert list(textsets.to_passages(raw)) == ["A short passage with newlines in it."]


# --------------------------------------------------------------------------- dict-gcide

_B64_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

GCIDE_ENTRY = """\
Dichotomize \\Di*chot"o*mize\\, v. t. [imp. & p. p.
   {Dichotomized}; p. pr. & vb. n. {Dichotomizing}.] [See
   {Dichotomous}.]
   1. To cut into two parts; to part into two divisions; to
      divide into pairs; to bisect. [R.]
      [1913 Webster]

            The apostolical benediction dichotomizes all good
            things into grace and peace.          --Bp. Hall.
      [1913 Webster]

   2. (Astron.) To exhibit as a half disk. See {Dichotomy}, 3.
      [1913 Webster]

   Syn: bisect, halve.
        [WordNet 1.5]
"""


def test_gcide_entry_passages_strip_markup():
    assert list(textsets.gcide_entry_passages(GCIDE_ENTRY)) == [
        "To cut into two parts; to part into two divisions; to divide into pairs; to bisect.",
        "The apostolical benediction dichotomizes all good things into grace and peace.",
        "(Astron.) To exhibit as a half disk. See Dichotomy, 3.",
    ]


def test_gcide_head_with_pronunciation_key_accents_and_derived_form():
    entry = (
        "Fixed \\Fixed\\ (f[i^]kst), a. [From {Fix}, v.]\n"
        "   Settled; established; as, a fixed caf['e] habit. -- {Fix\"ed*ly}, adv.\n"
        "   [1913 Webster]\n"
    )
    assert list(textsets.gcide_entry_passages(entry)) == [
        "Settled; established; as, a fixed cafe habit. -- Fixedly, adv."
    ]


def test_gcide_clean_text_nested_brackets_and_attribution():
    text = "To frighten. [OE. aferen, AS. [=a]f?ran. See {Afeard}.] --Sir T.\n  Browne."
    assert textsets.clean_gcide_text(text) == "To frighten."


def _dict_number(value: int) -> str:
    """Encode a number the way dictd indexes do (base-64 digits, most significant first)."""
    out = ""
    while True:
        out = _B64_DIGITS[value % 64] + out
        value //= 64
        if value == 0:
            return out


def test_gcide_entries_from_index_skip_header_and_duplicates():
    head = b"00-database-info\n   This file was converted.\n"
    body = b"Abc \\Abc\\, n.\n   A thing.\n   [1913 Webster]\n"
    data = head + body

    index = (
        f"00-database-info\t{_dict_number(0)}\t{_dict_number(len(head))}\n"
        f"00databaseinfo\t{_dict_number(0)}\t{_dict_number(len(head))}\n"
        f"Abc\t{_dict_number(len(head))}\t{_dict_number(len(body))}\n"
        f"abc\t{_dict_number(len(head))}\t{_dict_number(len(body))}\n"
    )
    assert list(textsets.gcide_entries(data, index)) == [body.decode()]


def test_decode_dict_number():
    assert textsets.decode_dict_number("A") == 0
    assert textsets.decode_dict_number("Fz") == 5 * 64 + 51
    assert textsets.decode_dict_number("Kj") == 10 * 64 + 35
    for value in (0, 63, 64, 4095, 39_952_321):
        assert textsets.decode_dict_number(_dict_number(value)) == value


def test_iter_gcide_reads_the_gzip_dictionary(tmp_path):
    dictd = tmp_path / textsets.GCIDE_DICT.parent
    dictd.mkdir(parents=True)
    body = b"Abc \\Abc\\, n.\n   A small thing used in tests.\n   [1913 Webster]\n"
    with gzip.open(tmp_path / textsets.GCIDE_DICT, "wb") as fh:
        fh.write(body)
    (tmp_path / textsets.GCIDE_INDEX).write_text(f"Abc\tA\t{_dict_number(len(body))}\n")
    assert list(textsets.iter_gcide(tmp_path)) == ["A small thing used in tests."]


# --------------------------------------------------------------------------- fortunes


def test_split_fortunes_on_percent_lines():
    text = (
        "A celebrity is a person who is known for his well-knownness.\n"
        "%\n"
        "\tTwo lines\n"
        "\tof a fortune.\n"
        "\t\t-- Somebody\n"
        "%\n"
        "\n"
        "%\n"
        "Last one, no trailing percent; 50% off is not a separator.\n"
    )
    assert textsets.split_fortunes(text) == [
        "A celebrity is a person who is known for his well-knownness.",
        "\tTwo lines\n\tof a fortune.\n\t\t-- Somebody",
        "Last one, no trailing percent; 50% off is not a separator.",
    ]


def test_split_fortunes_removes_overstrike():
    assert textsets.split_fortunes("_\bb_\bo_\bl_\bd text\n%\n") == ["bold text"]


# --------------------------------------------------------------------------- reStructuredText

RST_DOC = """\
.. SPDX-License-Identifier: GPL-2.0

=============
A Title Here
=============

:Author: Someone <someone@example.org>

This guide describes the :c:func:`kmalloc` helper and the ``GFP_KERNEL``
flag; see `the docs <https://example.org/docs>`_ and :ref:`other <label>`.

Below shows an example::

  int x = kmalloc(10, GFP_KERNEL);

  return x;

Sub title
---------

- First item of a **bulleted** list.
- Second item, with *emphasis*.

.. code-block:: c

   int y = 0;

.. note:: Notes are prose too.

   And their body is kept.

.. function:: open(file)

   Open :func:`~os.path.join` things.

+-----+-----+
| a   | b   |
+-----+-----+

>>> print("doctest")
doctest

Last paragraph.
"""


def test_rst_passages():
    assert list(textsets.iter_rst(RST_DOC)) == [
        "This guide describes the kmalloc helper and the GFP_KERNEL flag; see the docs and other.",
        "Below shows an example:",
        "First item of a bulleted list.",
        "Second item, with emphasis.",
        "Notes are prose too.",
        "And their body is kept.",
        "Open join things.",
        "Last paragraph.",
    ]


def test_clean_rst_inline():
    assert textsets.clean_rst_inline("Use :py:meth:`!str.split` here ::") == "Use str.split here"
    assert textsets.clean_rst_inline("See |copy| and [#]_ note.") == "See copy and note."
    assert textsets.clean_rst_inline("A `link`_ and `anon <x>`__.") == "A link and anon."


# --------------------------------------------------------------------------- POD

POD_DOC = """\
=head1 NAME

perlfoo - an example

=head2 Why is this heading long enough to keep?

The C<printf> function and B<bold> I<italic> text; see L<perlop/"Quote">,
L<the manual|perlfunc> and C<< $x->method >>. E<lt>tagE<gt> X<index>here.

    my $code = "verbatim";

=begin html

<p>Skipped.</p>

=end html

=over 4

=item * not kept

Item body is kept.

=back

=cut

Text after cut is not POD.
"""


def test_pod_passages():
    assert list(textsets.iter_pod(POD_DOC)) == [
        "perlfoo - an example",
        " Why is this heading long enough to keep?",
        "The printf function and bold italic text; see perlop: Quote, the manual and "
        "$x->method. <tag> here.",
        "Item body is kept.",
    ]


def test_clean_pod_inline_nested():
    assert textsets.clean_pod_inline("B<I<nested> C<code>>") == "nested code"


# --------------------------------------------------------------------------- HDF5 + registry


def test_hdf5_round_trip_angular(tmp_path):
    pytest.importorskip("h5py")
    train, test = synthetic.random_sphere(300, 7, dim=16, seed=5)
    ids, dists = datasets.ground_truth(train, test, k=10)
    path = tmp_path / "tiny-16-angular.hdf5"
    datasets.write_hdf5(path, train, test, ids, dists, "cosine")
    ds = datasets.read_hdf5(path)
    assert ds.distance == "angular" and ds.dimension == 16
    np.testing.assert_array_equal(ds.train, train)
    np.testing.assert_array_equal(ds.test, test)
    np.testing.assert_array_equal(ds.neighbors, ids)
    np.testing.assert_allclose(ds.distances, dists)
    # ground truth agrees with a direct computation
    expected = np.argsort(1.0 - test @ train.T, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(ds.neighbors, expected)
    assert np.all(np.diff(ds.distances, axis=1) >= 0)


def test_hdf5_round_trip_euclidean_stores_plain_l2(tmp_path):
    pytest.importorskip("h5py")
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (200, 8)).astype(np.float32)
    test = rng.integers(0, 256, (5, 8)).astype(np.float32)
    ids, sq = datasets.ground_truth(train, test, k=4, metric="l2")
    path = tmp_path / "tiny-8-euclidean.hdf5"
    datasets.write_hdf5(path, train, test, ids, sq, "l2")
    ds = datasets.read_hdf5(path)
    assert ds.distance == "euclidean"
    plain = np.linalg.norm(test[:, None, :] - train[ids], axis=2)
    np.testing.assert_allclose(ds.distances, plain, rtol=1e-5)


def test_build_synthetic_into_data_dir(tmp_path, monkeypatch):
    pytest.importorskip("h5py")
    monkeypatch.setenv(datasets.ENV_DATA_DIR, str(tmp_path))
    path = datasets.build_synthetic("lowrank-2k-384-angular", "lowrank", 2000)
    assert path == tmp_path / "lowrank-2k-384-angular.hdf5"
    ds = datasets.read_hdf5(path)
    assert ds.train.shape == (2000, 384) and ds.test.shape == (datasets.N_TEST, 384)
    assert ds.neighbors.shape == (datasets.N_TEST, datasets.K_GROUND_TRUTH)
    assert ds.neighbors.dtype == np.int64 and ds.distance == "angular"
    train, test = synthetic.lowrank(2000, datasets.N_TEST)
    np.testing.assert_array_equal(ds.train, train)
    np.testing.assert_array_equal(ds.test, test)
    assert datasets.build_synthetic("lowrank-2k-384-angular", "lowrank", 2000) == path


def test_registry_lists_the_new_sets(capsys):
    new = {
        "minilm-text-562k-384-angular",
        "minilm-text-1m-noise092-384-angular",
        "glove6b-50-angular",
        "sift-images-128-euclidean",
        "random-sphere-100k-384-angular",
        "lowrank-100k-384-angular",
    }
    assert new <= set(datasets.REGISTRY)
    assert datasets.main(["list"]) == 0
    assert new <= set(capsys.readouterr().out.split())


def test_split_indices_hold_out_distinct_queries():
    test_idx, train_idx = datasets.split_indices(5000)
    assert len(test_idx) == datasets.N_TEST and len(train_idx) == 4000
    assert not set(test_idx) & set(train_idx)
    np.testing.assert_array_equal(datasets.split_indices(5000)[0], test_idx)


def test_sift_unique_rows_keeps_first_occurrences_in_order():
    from bench.datagen.sift import unique_rows

    x = np.array([[3, 0], [1, 2], [3, 0], [0, 0], [1, 2]], dtype=np.float32)
    np.testing.assert_array_equal(unique_rows(x), [[3, 0], [1, 2], [0, 0]])
