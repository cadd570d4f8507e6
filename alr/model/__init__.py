"""The model as every training and scoring stage holds it: loading the base and a tuned run (`load`),
the Hugging Face Trainer set-up shared by phase 1 and phase 2 (`trainer`), and resumable checkpoints
(`checkpoints`).

May import: `alr.core`, `alr.assets`, `alr.config`.
"""
