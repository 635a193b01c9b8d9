"""Every message that crosses an actor or process boundary.

One module per conversation (``errors``, ``broker``, ``demo``, ...), the envelope that
carries them (``envelope``) and the wire codec (``codec``). Bodies are msgspec Structs
tagged with their class name; nothing that crosses a boundary is a dict.
"""
