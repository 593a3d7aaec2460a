"""gem-run verify-bundle BUNDLE: re-hash every file of a bundle against its manifest and, with trusted keys
(--trusted-keys or $GEM_TRUSTED_KEYS), check its signature: what an installer or an upgrade runs before the
bundle is switched in.

    gem-run verify-bundle /opt/gem-edge/bundles/current [--trusted-keys /etc/gem-edge/trusted-keys]
"""
from __future__ import annotations

from pathlib import Path

import click


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("bundle_dir", type=click.Path(path_type=Path))
@click.option("--trusted-keys", type=click.Path(exists=True, path_type=Path), default=None,
              help="a PEM file or folder of public keys the bundle must be signed by (default: $GEM_TRUSTED_KEYS)")
def verify_bundle(bundle_dir, trusted_keys):
    """Re-hash every file of a bundle against its manifest; check its signature where keys are trusted."""
    from ..bundle import Bundle

    b = Bundle.open(bundle_dir, verify="always", trusted_keys=trusted_keys)
    names = b.verify_all()
    signed = f"signed by key {b.signer}" if b.signer else "signature not checked (no trusted keys)"
    click.echo(f"ok: {len(names)} files match {bundle_dir}/manifest.json (bundle {b.bundle_id}, {signed})")
