"""Settings: every setting declared once (`schema.setting`: default, help, flag, allowed values).

`pipeline`: a search's settings (the sections of a pipeline file) and `edgenas export`'s;
`schema`: the one mechanism that reads, checks and writes every settings file (pipelines and
hardware profiles). pipelines/default.toml is generated from these declarations
(`edgenas.cli.default_toml`)."""
