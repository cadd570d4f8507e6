"""Datasets generated from registry packages: chemical families of the elements (`periodictable`),
ICD-10-CM chapters and blocks (`simple-icd-10-cm`)."""

from __future__ import annotations

import ast
import random
import re

from ...core.examples import DataError
from ...core.model_free import overlap_scores
from ..splits import dataset_rng, shuffle_choices

# The chemical family of each element by atomic number, as the periodic table is usually coloured.
# Polonium and astatine (classed differently by different sources) and the superheavy elements
# (Z >= 104, families only predicted) are left out.
ELEMENT_FAMILIES = {
    "alkali metal": [3, 11, 19, 37, 55, 87],
    "alkaline earth metal": [4, 12, 20, 38, 56, 88],
    "transition metal": [*range(21, 31), *range(39, 49), *range(72, 81)],
    "lanthanide": list(range(57, 72)),
    "actinide": list(range(89, 104)),
    "post-transition metal": [13, 31, 49, 50, 81, 82, 83],
    "metalloid": [5, 14, 32, 33, 51, 52],
    "reactive nonmetal": [1, 6, 7, 8, 15, 16, 34],
    "halogen": [9, 17, 35, 53],
    "noble gas": [2, 10, 18, 36, 54, 86],
}


def element_names(core_py: bytes) -> list[str]:
    """The 118 element names, lower case, in atomic-number order, from `periodictable/core.py`'s
    `element_base` table ({Z: (name, symbol, ...)}), read as a literal: the package is never imported."""
    for node in ast.parse(core_py).body:
        target = (
            node.target
            if isinstance(node, ast.AnnAssign)
            else (node.targets[0] if isinstance(node, ast.Assign) else None)
        )
        if isinstance(target, ast.Name) and target.id == "element_base":
            table = ast.literal_eval(node.value)
            names = [table[z][0].lower() for z in range(1, 119) if z in table]
            if len(names) == 118:
                return names
    raise ValueError("periodictable/core.py: expected an element_base table of the elements 1-118")


def elements_mc(names: list[str], n_choices: int, seed: int) -> list[dict]:
    """ "Which family of elements does <element> belong to?", one item per element, the gold family and
    n_choices - 1 other families. Every family is a train answer, so distractors are not biased toward
    (or away from) answers seen in training; what transfers is the model's knowledge of the elements.
    Each item names its element as its `group` (the entity it asks about, which `member_questions` asks
    about the other way round; the CIs resample an element's two items together)."""
    if len(names) != 118 or names[0].lower() != "hydrogen":
        raise ValueError("elements: expected the 118 element names from hydrogen on")
    rng = dataset_rng(seed, "elements")
    family_of = {z: family for family, zs in ELEMENT_FAMILIES.items() for z in zs}
    rows = []
    for z, name in enumerate(names, 1):
        if z not in family_of:
            continue
        gold = family_of[z]
        others = rng.sample([f for f in ELEMENT_FAMILIES if f != gold], n_choices - 1)
        rows.append(
            {
                "id": f"elements-{z}",
                "question": f"Which family of elements does {name} belong to?",
                "choices": [gold, *others],
                "label": 0,
                "group": name,
            }
        )
    return rows


def member_questions(items: list[dict], rng: random.Random, n_choices: int) -> list[dict]:
    """ "Which of these elements is a <family>?" for each element of one split's family items: the element
    and n_choices - 1 elements of other families, all from the same split, so no choice of a test item
    was ever an answer (or a choice) in training. Each gold answer is an element asked about once, so
    no answer prior can help: the prior-robust score of this half is its accuracy. The family items
    alone left the prior-robust score to 10 answers over 40 test items, some with one or two items."""
    family_of = {r["group"]: r["choices"][r["label"]] for r in items}
    rows = []
    for element, family in family_of.items():
        others: dict[str, str] = {}  # one distractor element per other family
        for other in rng.sample(sorted(family_of), len(family_of)):
            if family_of[other] != family and family_of[other] not in others:
                others[family_of[other]] = other
        if len(others) < n_choices - 1:
            raise ValueError(
                f"the split with {element} has elements of {len(others) + 1} families; "
                f"{n_choices} choices need {n_choices} families: give the split more elements"
            )
        article = "an" if family[0] in "aeiou" else "a"
        rows.append(
            {
                "id": f"elements-{element}-member",
                "question": f"Which of these elements is {article} {family}?",
                "choices": [element, *rng.sample(list(others.values()), n_choices - 1)],
                "label": 0,
                "group": element,
            }
        )
    return shuffle_choices(rows, rng)


def _strip_range(description: str) -> str:
    return re.sub(r"\s*\([A-Z0-9.]+-[A-Z0-9.]+\)\s*$", "", description).strip()


def icd10cm_mc(n_items: int, n_choices: int, seed: int) -> list[dict]:
    """Templated ICD-10-CM items: which chapter (even ids) or block (odd ids) covers a condition.

    The condition is drawn uniformly over chapters first (so no chapter dominates the labels),
    then uniformly among that chapter's categories/subcategories (no 7th-character extensions).
    Distractors come from other chapters. An item is kept only when no choice shares more content
    words with the condition than another (`alr.core.model_free.overlap_scores`): before that filter, picking
    the choice with the most word overlap scored 0.44 on the test split (chance 0.25).
    """
    import simple_icd_10_cm as cm

    rng = dataset_rng(seed, "icd10cm")
    chapters = [c for c in cm.get_all_codes(with_dots=True) if cm.is_chapter(c)]
    codes_by_chapter: dict[str, list[str]] = {c: [] for c in chapters}
    block_of: dict[str, str] = {}
    blocks_by_chapter: dict[str, list[str]] = {c: [] for c in chapters}
    for code in cm.get_all_codes(with_dots=True):
        if cm.is_block(code):
            blocks_by_chapter[cm.get_ancestors(code)[-1]].append(code)
        elif cm.is_category_or_subcategory(code) and not cm.is_extended_subcategory(code):
            ancestors = cm.get_ancestors(code)
            codes_by_chapter[ancestors[-1]].append(code)
            block_of[code] = ancestors[-2]
    chapters = [c for c in chapters if len(codes_by_chapter[c]) >= 2]
    rows, used = [], set()
    for _ in range(n_items * 100):
        if len(rows) == n_items:
            break
        chapter = rng.choice(chapters)
        code = rng.choice(codes_by_chapter[chapter])
        if code in used:
            continue
        used.add(code)
        condition = cm.get_description(code)
        others = rng.sample([c for c in chapters if c != chapter], n_choices - 1)
        if len(rows) % 2 == 0:
            question = f'In the ICD-10-CM classification, which chapter covers "{condition}"?'
            gold, distractors = chapter, others
        else:
            question = f'In the ICD-10-CM classification, which group of codes covers "{condition}"?'
            gold = block_of[code]
            distractors = [rng.choice(blocks_by_chapter[c]) for c in others]
        choices = [_strip_range(cm.get_description(c)) for c in [gold] + distractors]
        if len(set(choices)) != len(choices):
            continue
        if len(set(overlap_scores(condition, choices))) > 1:
            continue  # word overlap would single out a choice (the gold, mostly): only knowledge may
        rows.append({"id": f"icd10cm-{code}", "question": question, "choices": choices, "label": 0})
    if len(rows) < n_items:
        raise DataError(f"could only build {len(rows)} of {n_items} distinct ICD-10-CM items")
    return rows
