"""Workers: take job ids from the RQ queue and run them on a style-transfer engine kept warm in the process."""
