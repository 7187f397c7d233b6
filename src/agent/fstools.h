/*
 * fstools: the filesystem MCP tool set of spec section 7
 * (@modelcontextprotocol/server-filesystem 2025.3.28, allowed directory
 * the workspace), served natively: the same names, input schemas and
 * result texts, as CallToolResult JSON. Paths follow wspace.c's rules.
 */
#ifndef SANDPOOL_FSTOOLS_H
#define SANDPOOL_FSTOOLS_H

#include <stddef.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

/* Largest file read_file and edit_file handle. */
#define FSTOOLS_MAX_READ (16 * 1024 * 1024)
/* Most results of search_files and entries of directory_tree. */
#define FSTOOLS_MAX_ENTRIES 100000

/* Is name one of the tools? */
int fstools_has(const char *name);
/* Emits {tool: {"name", "json_schema"}} for every tool (list_tools). */
void fstools_gen_list(yajl_gen);
/* Runs a tool; returns the CallToolResult JSON (caller frees). */
char *fstools_call(const char *name, yajl_val args, size_t *len);

#endif
