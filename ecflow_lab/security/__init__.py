"""The security layer shared by the suite server, the DAG executor and the transfer master.

- :mod:`.access`: a suite server's user checks (password, then white list) in one object.
- :mod:`.whitelist`: ecFlow's white list (``ecf.lists``): who may read or change which suites.
- :mod:`.passwd`: ecFlow's password files (``ecf.passwd``, ``ecf.custom_passwd``) and salted hashes.
- :mod:`.keys`: CurveZMQ keypairs in a private per-user directory (``ecflow-lab keys``).
- :mod:`.curve`: Curve-secured server/client sockets, ecFlow's ``ECF_SSL`` / ``--ssl`` switches.
- :mod:`.secret`: a cluster-secret handshake and signed messages, checked before anything is unpickled.
"""

from __future__ import annotations

from .access import ServerAccess, is_write_request, request_paths
from .curve import (
    ClientCurve,
    CurveServer,
    add_ssl_argument,
    connect_checked,
    peer_user,
    secure_client_socket,
    secure_server_socket,
    ssl_from_args,
    ssl_setting,
)
from .errors import AccessDenied, AuthenticationError, CurveHandshakeError, KeyFileError, SecurityFileError
from .files import ensure_private_dir, is_private, write_private
from .keys import (
    KeyPair,
    authorize_client,
    authorized_client_keys,
    generate_keypair,
    keys_dir,
    load_keypair,
    load_public,
)
from .passwd import (
    PasswdFile,
    client_password,
    generate_password,
    hash_password,
    job_password_ok,
    passwd_path,
    verify_password,
)
from .secret import SecretGate, Session, client_handshake, cluster_secret, new_secret, server_handshake
from .whitelist import WhiteList, whitelist_path

__all__ = [
    "AccessDenied",
    "AuthenticationError",
    "ClientCurve",
    "CurveHandshakeError",
    "CurveServer",
    "KeyFileError",
    "KeyPair",
    "PasswdFile",
    "SecretGate",
    "ServerAccess",
    "SecurityFileError",
    "Session",
    "WhiteList",
    "add_ssl_argument",
    "authorize_client",
    "authorized_client_keys",
    "client_handshake",
    "client_password",
    "cluster_secret",
    "connect_checked",
    "ensure_private_dir",
    "generate_keypair",
    "generate_password",
    "hash_password",
    "is_private",
    "is_write_request",
    "job_password_ok",
    "keys_dir",
    "load_keypair",
    "load_public",
    "new_secret",
    "passwd_path",
    "peer_user",
    "request_paths",
    "secure_client_socket",
    "secure_server_socket",
    "server_handshake",
    "ssl_from_args",
    "ssl_setting",
    "verify_password",
    "whitelist_path",
    "write_private",
]
