"""PromptMix prompt filtering (Section III, optional last stage): :mod:`.config`, :mod:`.filtering`."""
