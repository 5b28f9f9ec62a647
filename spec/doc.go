// Package spec holds the wire types shared by the modelx registry, client and
// controller: media types, the index, manifest and descriptor documents, the
// modelx.yaml model config, name and reference syntax, and the JSON error
// envelope the registry answers with.
package spec
