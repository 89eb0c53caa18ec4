"""`remotegpu get images`: the image catalogue as the caller may use it."""

from __future__ import annotations

from remotegpu.ops.cli.client.options import Output
from remotegpu.ops.cli.client.session import signed_in_client
from remotegpu.ops.cli.consoles import console
from remotegpu.ops.output import OutputFormat, emit


def get_images(output: Output = OutputFormat.TABLE) -> None:
    """Images you can use."""
    with signed_in_client() as client:
        items = list(client.items("/images"))
    emit(
        console,
        items,
        output,
        [
            ("NAME", lambda i: i["name"]),
            ("REFERENCE", lambda i: i["reference"]),
            ("VISIBILITY", lambda i: i["visibility"]),
            ("CUDA", lambda i: i["cuda_version"]),
        ],
    )
