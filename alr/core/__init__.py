"""The shared core every stage stands on: errors and their one-line messages (`errors`), atomic writes,
locks and input checks (`io`), where each file lives (`layout`), config sections and overrides
(`sections`), timers and provenance (`measure`), the example format and its tokenization
(`examples`), the model-free rows (`model_free`), and the process and GPU helpers (`dist`,
`gpu_slots`).

May import: nothing else of alr.
"""
