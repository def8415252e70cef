"""loader_script"""
