"""A config whose YAML breaks names the line where the reader stopped and, where a quote or a
bracket was left open earlier, the line where it began: the reader meets that only at the end
of the file, and 'broken YAML at line 4' of a three-line file sent people to a line that is
not there."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import ConfigError, load_config


@pytest.mark.parametrize(("text", "said"), [
    ("store:\n  url: sqlite:///x\n  bogus: [1\n",
     "broken YAML at line 4: expected ',' or ']', but got '<stream end>' (while parsing a flow "
     "sequence begun at line 3)"),
    ('state_dir: "kept\nstore:\n  url: null\n',
     "broken YAML at line 4: found unexpected end of stream (while scanning a quoted scalar "
     "begun at line 1)"),
    ("a: 1\n b: 2\n", "broken YAML at line 2: mapping values are not allowed here"),
])
def test_broken_yaml_names_where_the_open_quote_or_bracket_began(
        text: str, said: str, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert str(refused.value).endswith(said)  # on main: no "(... begun at line N)"
