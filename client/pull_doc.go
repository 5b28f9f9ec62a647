package client

// How a pull works (Client.Pull), in three parts, as restic's restorer
// plans, downloads and writes, after one shortcut: when the directory's
// summary of its last transfer (summary.go) is this pull, its files are as
// it left them and the reference still names its manifest, there is
// nothing to do.
//
//  1. Plan (pull_plan.go, pull_local.go). The manifest's targets are the
//     files of the version: one per whole file, chunked file and legacy
//     archive, one per file of a pack (targetsOf), narrowed to what the
//     options select (selectTargets, which reads modelx.yaml verified).
//     Legacy archives are fetched and checked first, so their files join
//     the plan (fetchLegacyDirs). The planner then compares every target
//     with what the directory holds, writing nothing: every path is
//     checked (no symbolic link on the way, no name spec.ValidatePath
//     refuses), a file that holds its target is skipped (known through
//     the hash cache, or hashed), and whatever is in the way is judged
//     replaceable or a conflict; one conflict stops the pull before a
//     byte is written (*ConflictError). The plan is what to fetch (todo),
//     what the writes may remove, and what was skipped. groupFetches then
//     groups todo by how it is fetched: packed files by pack, whole and
//     chunked files one by one, each with its copies (other names of the
//     same content, written from its verified bytes, not fetched again).
//
//  2. Fetch (pull_fetch.go, pull_chunked.go). The puller reads blobs
//     through a blobFetcher (the registry, in a test memory), and every
//     byte through content's verifying reader: exact size, no trailing
//     bytes, the digest at the end, so wrong content never reaches its
//     name. A whole file is downloaded into DIGEST.part in the state
//     directory, resuming what a killed pull left. A chunked file is
//     assembled in DIGEST.chunked.part, chunk by chunk, with the chunks
//     done recorded beside it; a chunk a local file holds (found by digest
//     through the hash cache or by cutting the old copy) is copied and
//     verified instead of downloaded. A pack is fetched whole when most of
//     it is needed, else file by file with Range requests; each packed
//     file is decoded and verified alone.
//
//  3. Write (pull_tree.go). The tree writer puts each verified file in
//     place: packed files as unnamed files (O_TMPFILE) linked in once
//     complete, where the filesystem allows, else like the others renamed
//     from a temp or part file; all with the manifest's permissions, each
//     recorded in the hash cache with the boot it was written in (nothing
//     is fsynced; see durable.go). It checks every
//     directory again as it writes (ensureDir), and removes what is in
//     the way only as the plan allowed.
//
// Afterwards, the files modelx knows that the version does not have are
// reported stale, or pruned (settleStale). A pull that fails leaves what
// a retry resumes (afterFailure).
