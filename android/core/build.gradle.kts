import org.jetbrains.kotlin.gradle.dsl.JvmTarget

// Kotlin/JVM only: no Android plugin, so no android.* import can compile here (STYLE.md §4.1).
plugins {
    alias(libs.plugins.kotlin.jvm)
}

java {
    // Java 8 bytecode and API: what Android 10 (minSdk 29) runs without desugaring.
    // scripts/test-core.sh compiles with the same -jvm-target 1.8 -Xjdk-release=1.8.
    sourceCompatibility = JavaVersion.VERSION_1_8
    targetCompatibility = JavaVersion.VERSION_1_8
}

kotlin {
    compilerOptions {
        jvmTarget.set(JvmTarget.JVM_1_8)
        freeCompilerArgs.add("-Xjdk-release=1.8")
    }
}

dependencies {
    implementation(libs.okhttp)
    testImplementation(libs.junit)
}

tasks.test {
    // The shared golden vectors, the same files the Rust tests read.
    systemProperty("traffix.vectors", rootProject.file("../tests/vectors").absolutePath)
    // ServerE2ETest runs the Kotlin node against the real server when a Rust build is there
    // (`cargo build` at the repository root); without one it is skipped. scripts/test-core.sh
    // always builds it, so CI never skips.
    rootProject.file("../target/debug/traffix").takeIf { it.canExecute() }?.let {
        systemProperty("traffix.bin", it.absolutePath)
    }
}

// Test sources may use the JDK 17 API (the JDK's Ed25519 provider for software keys); main stays on
// Java 8. Tests run on the JDK that runs Gradle (17 or newer, as AGP 8 requires).
tasks.named<org.jetbrains.kotlin.gradle.tasks.KotlinCompile>("compileTestKotlin") {
    compilerOptions {
        jvmTarget.set(JvmTarget.JVM_17)
        freeCompilerArgs.set(emptyList())
    }
}
tasks.named<JavaCompile>("compileTestJava") {
    sourceCompatibility = "17"
    targetCompatibility = "17"
}
