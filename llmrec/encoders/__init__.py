"""Sequential encoders (the collaborative signal): a registry of ``nn.Module`` s behind one contract.

``from llmrec.encoders import build_encoder, load_encoder`` registers every builtin encoder on import.
"""

from llmrec.encoders import bert4rec, gru4rec, pop, sasrec  # noqa: F401  (registers the builtin encoders)
from llmrec.encoders.base import ENCODERS, Encoder, EncoderConfig, build_encoder, load_encoder, register_encoder

__all__ = ["ENCODERS", "Encoder", "EncoderConfig", "build_encoder", "load_encoder", "register_encoder"]
