"""`nbgrader` as the bundle's tools run it: nbgrader's own command, without two costs it pays in every process.

Run as a script (release.NBGRADER), so it imports nothing of the bundle's package:
- jsonschema (which nbformat loads) imports an IRI checker that compiles a grammar on import, most of a
  second of CPU; no notebook schema has an IRI to check.
- A command that creates a gradebook (the first `generate_assignment` of a course) stamps it with
  nbgrader's newest migration, which nbgrader asks of a separate `alembic heads` process: seconds of
  CPU to import alembic and read the migrations again. This process has them at hand.
"""
import os
import sys

sys.modules.setdefault("rfc3987_syntax", None)


def alembic_head() -> str:
    """The newest of nbgrader's gradebook migrations: what `alembic heads` prints first."""
    import nbgrader.api
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    config = Config()
    config.set_main_option("script_location", os.path.join(os.path.dirname(nbgrader.api.__file__), "alembic"))
    return ScriptDirectory.from_config(config).get_current_head()


if __name__ == "__main__":
    import nbgrader.api
    nbgrader.api.get_alembic_version = alembic_head
    from nbgrader.apps.nbgraderapp import main
    main()
