"""Loading models in every format kdscope accepts (checkpoints, int8 archives, factories), under one trust policy."""
