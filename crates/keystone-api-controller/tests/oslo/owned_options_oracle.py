"""Which operator-owned options a customServiceConfig snippet changes, according to oslo.config itself.

Reads a JSON list of INI snippets on stdin. For each, Keystone's own option definitions (Debian's
python3-keystone, with oslo.db's and oslo.policy's) are loaded from a base file that sets every owned option to
a sentinel, then from the snippet, in that order (as keystone.conf, then keystone.conf.d/10-custom.conf). Prints a
JSON list: per snippet, the sorted "[group] option" names whose value the snippet changed, or {"error": ...}
when oslo.config cannot parse it (Keystone would not start). With --aliases, prints every owned option with the
deprecated (group, name) pairs oslo.config still reads for it.
"""
import json
import os
import sys
import tempfile

from oslo_config import cfg
from oslo_db import options as db_options
from oslo_policy import opts as policy_opts

import keystone.conf

CONF = keystone.conf.CONF
keystone.conf.configure(CONF)
db_options.set_defaults(CONF)
policy_opts._register(CONF)

OWNED = [
    ("database", "connection"),
    ("token", "expiration"),
    ("token", "allow_expired_window"),
    ("token", "provider"),
    ("credential", "key_repository"),
    ("oslo_policy", "enforce_scope"),
    ("oslo_policy", "enforce_new_defaults"),
] + [("fernet_tokens", o) for o in CONF.fernet_tokens] + [("fernet_receipts", o) for o in CONF.fernet_receipts]

BASE = """[database]
connection = mysql+pymysql://sentinel@base/keystone
[token]
expiration = 3601
allow_expired_window = 172801
provider = fernet
[fernet_tokens]
key_repository = /sentinel/fernet-keys
max_active_keys = 7
[fernet_receipts]
key_repository = /sentinel/fernet-keys
max_active_keys = 7
[credential]
key_repository = /sentinel/credential-keys
[oslo_policy]
enforce_scope = true
enforce_new_defaults = true
"""


def values():
    return {f"[{g}] {o}": getattr(getattr(CONF, g), o) for g, o in OWNED}


def run(snippet, workdir):
    base = os.path.join(workdir, "keystone.conf")
    custom = os.path.join(workdir, "10-custom.conf")
    with open(base, "w") as f:
        f.write(BASE)
    with open(custom, "w", newline="") as f:
        f.write(snippet)
    CONF.clear()
    CONF(args=[], default_config_files=[base], project="keystone", validate_default_values=False)
    before = values()
    CONF.clear()
    try:
        CONF(args=[], default_config_files=[base, custom], project="keystone", validate_default_values=False)
        after = values()
    except (cfg.ConfigFileParseError, cfg.ConfigFileValueError, ValueError) as e:
        return {"error": str(e)}
    return sorted(k for k in before if before[k] != after[k])


def aliases():
    """Every owned option with the deprecated (group, name) pairs oslo.config still reads for it."""
    out = []
    for g, o in OWNED:
        opt = CONF._get_opt_info(o, g)["opt"]
        out.append([g, o, [[d.group or g, d.name or o] for d in opt.deprecated_opts]])
    return out


def main():
    if sys.argv[1:] == ["--aliases"]:
        print(json.dumps(aliases()))
        return
    snippets = json.load(sys.stdin)
    with tempfile.TemporaryDirectory() as d:
        print(json.dumps([run(s, d) for s in snippets]))


main()
