"""Where a dataset's rows come from: the registry of `source:` kinds (`kinds`) and the readers behind
them. Part of `alr.assets`; may import `alr.core` and the rest of `alr.assets`."""
