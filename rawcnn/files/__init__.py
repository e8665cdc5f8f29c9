"""The ground floor: reading untrusted files and writing outputs safely.

    validate   checks on what a file declares (types, shapes, sizes, JSON) before it is read
    fileio     atomic writes, the overwrite policy, output folders, names taken from data
    jsonsafe   JSON values that stay valid (non-finite numbers written as null)

It imports nothing else of rawcnn.
"""
