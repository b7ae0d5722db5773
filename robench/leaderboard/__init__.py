"""The leaderboard: tracks fix a threat model and clips, entries are models with metadata, records are
measured results with provenance, and pages rank them with paired tests.

One job per module: :mod:`.tracks` (what makes numbers comparable), :mod:`.entry` (the submission
schema), :mod:`.evaluate` (an entry on a track through robench's runner, to a record), :mod:`.record`
(the record schema, atomic writes), :mod:`.ranking` (McNemar's exact test between neighbours),
:mod:`.render` (HTML, markdown, LaTeX, CSV, BibTeX), :mod:`.challenge` (external evaluations that lower an
entry's worst case) and :mod:`.challenged` (what they did, as a board shows it), :mod:`.transfer` (black-box
transfer between entries: its artefact, what the board makes of it, computing it), :mod:`.reliance` (accuracy
with an input replaced) and :mod:`.commands` (``robench leaderboard``).
"""
