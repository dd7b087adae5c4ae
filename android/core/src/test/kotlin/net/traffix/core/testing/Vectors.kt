package net.traffix.core.testing

import java.io.File

/**
 * The shared golden vectors of tests/vectors/ (the files the Rust tests read). The directory
 * comes from the system property `traffix.vectors` (set by scripts/test-core.sh and by Gradle);
 * without it, the first `tests/vectors` found walking up from the working directory.
 */
object Vectors {
    val dir: File by lazy {
        System.getProperty("traffix.vectors")?.let { return@lazy File(it) }
        var d: File? = File(System.getProperty("user.dir")).absoluteFile
        while (d != null) {
            val candidate = File(d, "tests/vectors")
            if (File(candidate, "frames.json").isFile) return@lazy candidate
            d = d.parentFile
        }
        throw IllegalStateException("tests/vectors not found: set -Dtraffix.vectors=<repo>/tests/vectors")
    }

    fun load(name: String): Map<String, Any?> {
        val f = File(dir, name)
        check(f.isFile) { "vector file $f missing" }
        @Suppress("UNCHECKED_CAST")
        return Json.parse(f.readText(Charsets.UTF_8)) as Map<String, Any?>
    }
}

/** Typed access to one JSON object of a vector file; errors name the case. */
class Case(val map: Map<String, Any?>) {
    val name: String get() = map["name"] as? String ?: map.toString()

    fun has(key: String) = map.containsKey(key) && map[key] != null

    fun str(key: String): String = map[key] as? String ?: bad(key, "a string")

    fun optStr(key: String): String? = if (has(key)) str(key) else null

    fun long(key: String): Long = map[key] as? Long ?: bad(key, "an integer")

    fun optLong(key: String): Long? = if (has(key)) long(key) else null

    fun int(key: String): Int = long(key).toInt()

    fun optInt(key: String): Int? = optLong(key)?.toInt()

    fun bool(key: String): Boolean = map[key] as? Boolean ?: bad(key, "a boolean")

    fun obj(key: String): Case {
        @Suppress("UNCHECKED_CAST")
        return Case(map[key] as? Map<String, Any?> ?: bad(key, "an object"))
    }

    fun list(key: String): List<Any?> = map[key] as? List<*> ?: bad(key, "a list")

    fun strings(key: String): List<String> = list(key).map { it as? String ?: bad(key, "a list of strings") }

    fun keys(): Set<String> = map.keys

    private fun bad(key: String, what: String): Nothing =
        throw AssertionError("\"$key\" is not $what in case $name: $map")

    override fun toString(): String = map.toString()

    companion object {
        @Suppress("UNCHECKED_CAST")
        fun listOf(doc: Map<String, Any?>, key: String): List<Case> =
            (doc[key] as? List<*> ?: throw AssertionError("vectors have no \"$key\" array")).map {
                Case(it as Map<String, Any?>)
            }
    }
}
