"""validate_notes.py: the written parts of results/validation/README.md (setup and conclusions), kept apart from
the generator so that the numbers stay generated while the reading of them is written by a person."""
NOTES = {
    "setup": "TODO",
    "smollm2": "",
    "gemma3": "",
    "claims": "",
    "conclusions": "TODO",
}
