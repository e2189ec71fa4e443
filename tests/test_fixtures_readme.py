"""Every bundled fixture names its source and licence in fixtures/README.md."""

from __future__ import annotations

from conftest import FIXTURES


def test_every_fixture_is_listed_with_a_licence() -> None:
    readme = (FIXTURES / "README.md").read_text(encoding="utf-8")
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    listed = {line.split("`")[1] for line in rows}
    files = {
        str(p.relative_to(FIXTURES))
        for p in FIXTURES.rglob("*")
        if p.is_file() and p.name != "README.md"
    }
    # Rows may name a file by its path under fixtures/ or, in a section's table, relative to it.
    missing = {f for f in files if f not in listed and f.split("/", 1)[-1] not in listed}
    assert not missing, f"fixtures without a README row: {sorted(missing)}"
    for line in rows:
        assert any(lic in line for lic in ("BSD-3-Clause", "MIT")), line
