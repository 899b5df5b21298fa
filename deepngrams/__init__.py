"""Deep N-grams: a character-level GRU language model, the course built on it, and its grader."""
import sys

# jsonschema (which nbformat loads) imports an IRI checker that compiles a grammar on import, most
# of a second of CPU in every process; no notebook schema has an IRI to check.
sys.modules.setdefault("rfc3987_syntax", None)
