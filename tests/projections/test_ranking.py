"""Query terms, reciprocal rank fusion and highlighting (projections/ranking.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from projections.ranking import MAX_TERMS, RRF_K, fuse, fuse_scores, highlights, query_terms, stem


def test_query_terms_keep_the_subject_words_of_a_question() -> None:
    assert query_terms("What did the lecture say about how cells divide?") == ["cells", "divide"]
    assert query_terms("When did the Bastille fall, in 1789?") == ["bastille", "fall", "1789"]


def test_query_terms_of_stop_words_emoji_and_punctuation_are_empty() -> None:
    assert query_terms("what is the of and to") == []
    assert query_terms("🎓🔥 ?! ... ''") == []


def test_query_terms_cannot_carry_fts_or_sql_syntax() -> None:
    terms = query_terms('"; DROP TABLE search_moments; -- NEAR(a b) OR x* ^y')
    assert terms and all(t.isalnum() for t in terms)


def test_query_terms_are_distinct_and_bounded() -> None:
    assert query_terms("energy Energy ENERGY") == ["energy"]
    assert len(query_terms(" ".join(f"word{i}" for i in range(200)))) == MAX_TERMS


def test_right_to_left_words_are_terms() -> None:
    assert query_terms("ما هي الخلية") == ["ما", "هي", "الخلية"]


def test_stem_joins_inflections() -> None:
    assert stem("cells") == stem("cell")
    assert stem("dividing") == stem("divides") == stem("divide")
    assert stem("class") == "class"  # not "clas"


def test_highlights_mark_words_sharing_a_stem() -> None:
    text = "Cells divide by mitosis; each cell copies its DNA."
    spans = highlights(text, ["cell", "dividing"])
    assert [text[a:b] for a, b in spans] == ["Cells", "divide", "cell"]
    assert highlights(text, []) == []


def test_fusion_rewards_agreement_and_names_the_retrievers() -> None:
    fused = fuse({"keyword": [1, 2, 3], "bge:m:384": [3, 1, 9]})
    assert [f.moment_id for f in fused] == [1, 3, 2, 9]
    assert fused[0].retriever == "both"
    assert {f.moment_id: f.retriever for f in fused}[2] == "keyword"
    assert {f.moment_id: f.retriever for f in fused}[9] == "semantic"
    assert fused[0].score == 1 / (RRF_K + 1) + 1 / (RRF_K + 2)


ranked_lists = st.dictionaries(
    st.sampled_from(["keyword", "bge:a:3", "e5:b:4"]),
    st.lists(st.integers(1, 30), unique=True, max_size=15),
    max_size=3,
)


@given(ranked_lists)
def test_fusion_is_a_ranking_of_exactly_the_ids_given(lists: dict[str, list[int]]) -> None:
    fused = fuse(lists)
    assert sorted(f.moment_id for f in fused) == sorted({i for ids in lists.values() for i in ids})
    scores = [f.score for f in fused]
    assert scores == sorted(scores, reverse=True)


@given(ranked_lists, st.integers(1, 30))
def test_appearing_in_one_more_list_never_lowers_a_moment(lists: dict[str, list[int]], moment: int) -> None:
    before = {f.moment_id: f.score for f in fuse(lists)}.get(moment, 0.0)
    extra = {**lists, "extra": [moment]}
    after = {f.moment_id: f.score for f in fuse(extra)}[moment]
    assert after > before


def test_relative_score_fusion_scales_each_list_and_weighs_semantic_higher() -> None:
    keyword = [(1, 12.0), (2, 6.0), (3, 2.0)]  # BM25-like: 1 → 1.0, 2 → 0.4, 3 → 0.0
    semantic = [(3, 0.81), (2, 0.71), (9, 0.31)]  # cosine: 3 → 1.0, 2 → 0.8, 9 → 0.0
    fused = fuse_scores({"keyword": keyword, "bge:m:384": semantic}, semantic_weight=0.75)
    scores = {f.moment_id: f.score for f in fused}
    assert scores[3] == pytest.approx(0.75)
    assert scores[2] == pytest.approx(0.25 * 0.4 + 0.75 * 0.8)
    assert scores[1] == pytest.approx(0.25)
    assert scores[9] == pytest.approx(0.0)
    assert [f.moment_id for f in fused] == [3, 2, 1, 9]
    assert {f.moment_id: f.retriever for f in fused} == {3: "both", 2: "both", 1: "keyword", 9: "semantic"}
    assert fuse_scores({"keyword": [(5, 3.0)]})[0].score == pytest.approx(0.25)  # a lone score scales to 1
    with pytest.raises(ValueError):
        fuse_scores({}, semantic_weight=1.5)


@given(st.dictionaries(st.sampled_from(["keyword", "bge:a:3", "e5:b:4"]),
                       st.lists(st.tuples(st.integers(1, 30), st.floats(-50, 50)), max_size=15), max_size=3),
       st.floats(0, 1))
def test_relative_scores_stay_within_0_and_1(lists: dict[str, list[tuple[int, float]]], weight: float) -> None:
    fused = fuse_scores(lists, semantic_weight=weight)
    assert all(-1e-9 <= f.score <= 1 + 1e-9 for f in fused)
    assert sorted(f.moment_id for f in fused) == sorted({i for scored in lists.values() for i, _ in scored})
